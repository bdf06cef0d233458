//! Pod volumes → ECI volumes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use vnode_plugin_sdk::translator::{
    EciConfigFile, EciConfigFileVolume, EciEmptyDir, EciNfs, EciVolume, EciVolumeKind, FileSet,
    Volume, VolumeSource,
};

use crate::errors::{At, Result, invalid, unsupported};

/// ECI's per-instance volume limit.
pub const MAX_VOLUMES: usize = 20;
/// ECI's limit on one config file's content.
pub const MAX_CONFIG_FILE_BYTES: usize = 32 * 1024;

/// Maps every volume, refusing what ECI cannot mount.
pub fn map_volumes(volumes: &[Volume]) -> Result<Vec<EciVolume>> {
    if volumes.len() > MAX_VOLUMES {
        return Err(invalid(
            "spec.volumes",
            format!(
                "the pod has {} volumes; an ECI instance mounts at most {MAX_VOLUMES}",
                volumes.len()
            ),
        ));
    }
    let mut mapped = Vec::with_capacity(volumes.len());
    for (i, v) in volumes.iter().enumerate() {
        mapped.push(map_volume(v, i)?);
    }
    Ok(mapped)
}

fn map_volume(v: &Volume, i: usize) -> Result<EciVolume> {
    const VOLUMES: At<'static> = At::root("spec.volumes");
    let volume = VOLUMES.index(i);
    let at = |kind: &'static str| volume.field(kind);
    let kind = match &v.source {
        VolumeSource::EmptyDir(e) => {
            let medium = match e.medium.as_deref() {
                None | Some("") => None,
                Some("Memory") => Some("Memory".to_string()),
                Some(other) => {
                    return Err(unsupported(
                        at("emptyDir").field("medium"),
                        format!(
                            "emptyDir medium {other:?} is not available on ECI (only node storage or Memory)"
                        ),
                    ));
                }
            };
            EciVolumeKind::EmptyDir(EciEmptyDir {
                medium,
                size_limit: e.size_limit.clone(),
            })
        }
        VolumeSource::ConfigMap(fs) => config_files(fs, at("configMap"))?,
        VolumeSource::Secret(fs) => config_files(fs, at("secret"))?,
        VolumeSource::Projected(fs) => config_files(fs, at("projected"))?,
        VolumeSource::DownwardApi(fs) => config_files(fs, at("downwardAPI"))?,
        VolumeSource::Nfs(n) => EciVolumeKind::Nfs(EciNfs {
            server: n.server.clone(),
            path: n.path.clone(),
            read_only: n.read_only,
        }),
        VolumeSource::HostPath(h) => {
            return Err(unsupported(
                at("hostPath"),
                format!(
                    "hostPath {:?} cannot be mounted: an ECI pod runs on its own instance, there is no node to share \
                     paths with; use an emptyDir, an NFS volume or a ConfigMap instead",
                    h.path
                ),
            ));
        }
        VolumeSource::PersistentVolumeClaim(c) => {
            return Err(unsupported(
                at("persistentVolumeClaim"),
                format!(
                    "PersistentVolumeClaim {:?} cannot be mounted by the default translator: ECI needs the backing \
                     disk or NAS itself; mount the NAS export as an nfs volume instead",
                    c.claim_name
                ),
            ));
        }
        VolumeSource::Other(kind) => {
            return Err(unsupported(
                format_args!("{volume}.{kind}"),
                format!("{kind} volumes are not available on ECI"),
            ));
        }
    };
    Ok(EciVolume {
        name: v.name.clone(),
        kind,
    })
}

/// A resolved ConfigMap/Secret/projected/downward-API volume → `ConfigFileVolume` with
/// base64 contents and modes. An empty set (an `optional` source that does not exist, or one
/// without data) becomes an empty `emptyDir`: exactly what the kubelet mounts then, and ECI
/// does not take a config-file volume without files.
fn config_files(fs: &FileSet, field: At<'_>) -> Result<EciVolumeKind> {
    if fs.files.is_empty() {
        return Ok(EciVolumeKind::EmptyDir(EciEmptyDir {
            medium: None,
            size_limit: None,
        }));
    }
    let mut files = Vec::with_capacity(fs.files.len());
    for f in &fs.files {
        if !relative_without_dot_dot(&f.path) {
            return Err(invalid(
                field,
                format!(
                    "file path {:?} must be relative and must not contain '..'",
                    f.path
                ),
            ));
        }
        if f.content.len() > MAX_CONFIG_FILE_BYTES {
            return Err(invalid(
                field,
                format!(
                    "file {:?} is {} bytes; an ECI config file holds at most {MAX_CONFIG_FILE_BYTES} bytes",
                    f.path,
                    f.content.len()
                ),
            ));
        }
        if let Some(m) = f.mode {
            check_mode(m, field)?;
        }
        files.push(EciConfigFile {
            path: f.path.clone(),
            content_base64: STANDARD.encode(&f.content),
            mode: f.mode,
        });
    }
    if let Some(m) = fs.default_mode {
        check_mode(m, field)?;
    }
    Ok(EciVolumeKind::ConfigFile(EciConfigFileVolume {
        default_mode: fs.default_mode,
        files,
    }))
}

/// Whether a file path is relative and has no `..` segment. Split as bytes: `/` is ASCII, and
/// `str::split`'s generic searcher is far more code on every config-file volume's path.
fn relative_without_dot_dot(path: &str) -> bool {
    let path = path.as_bytes();
    !path.is_empty() && path[0] != b'/' && !path.split(|&b| b == b'/').any(|seg| seg == b"..")
}

fn check_mode(mode: u32, field: At<'_>) -> Result<()> {
    if mode > 0o777 {
        return Err(invalid(
            field,
            format!("file mode {mode:#o} is not between 0 and 0777"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::relative_without_dot_dot;

    #[test]
    fn file_paths_must_be_relative_without_dot_dot() {
        for path in [
            "", "/", "/a", "..", "../a", "a/..", "a/../b", "a/b/..", "a", "a/b", "..a", "a..",
            "a/..b", "a/b/", "./a", "a//b", "é/..", "é/.é",
        ] {
            let by_str_split =
                !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|s| s == "..");
            assert_eq!(relative_without_dot_dot(path), by_str_split, "{path:?}");
        }
        assert!(relative_without_dot_dot("conf/app.yaml"));
        assert!(!relative_without_dot_dot("conf/../../etc/passwd"));
    }
}
