//! `spec.imagePullSecrets` → `ImageRegistryCredential.N`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use vnode_plugin_sdk::translator::{PullSecret, RegistryCredential};

use crate::errors::{At, Result, invalid};

const PULL_SECRETS: At<'static> = At::root("spec.imagePullSecrets");

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// Credentials from every docker-config pull secret, in secret order, one per registry (the
/// first secret naming a registry wins, as with the kubelet's keyring). Secrets of other types
/// are skipped, as the kubelet does. An entry with only `auth` (base64 `user:password`, what
/// `docker login` writes) is decoded.
pub fn credentials(secrets: &[PullSecret]) -> Result<Vec<RegistryCredential>> {
    let mut out: Vec<RegistryCredential> = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        // Written out only if this secret is refused.
        let field = PULL_SECRETS.index(i);
        let (data_key, nested) = match s.type_.as_str() {
            DOCKER_CONFIG_JSON => (".dockerconfigjson", true),
            DOCKER_CFG => (".dockercfg", false),
            _ => continue,
        };
        let Some((_, raw)) = s.data.iter().find(|(k, _)| k == data_key) else {
            return Err(invalid(
                field,
                format!(
                    "secret {:?} of type {} has no {data_key} key",
                    s.name, s.type_
                ),
            ));
        };
        let doc: serde_json::Value = serde_json::from_slice(raw).map_err(|e| {
            invalid(
                field,
                format!("{data_key} of secret {:?} is not valid JSON: {e}", s.name),
            )
        })?;
        let auths = if nested { doc.get("auths") } else { Some(&doc) };
        let Some(auths) = auths.and_then(|a| a.as_object()) else {
            return Err(invalid(
                field,
                format!("{data_key} of secret {:?} has no registry map", s.name),
            ));
        };
        for (registry, entry) in auths {
            let server = server_of(registry);
            if server.is_empty() || out.iter().any(|c| c.server == server) {
                continue;
            }
            let text = |k: &str| {
                entry
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let (mut user, mut password) = (text("username"), text("password"));
            if user.is_empty() && password.is_empty() {
                let auth = text("auth");
                if auth.is_empty() {
                    continue; // e.g. an identity-token-only entry: nothing ECI can use
                }
                let decoded = STANDARD.decode(auth.trim()).map_err(|_| {
                    invalid(
                        field,
                        format!(
                            "auth of registry {registry:?} in secret {:?} is not base64",
                            s.name
                        ),
                    )
                })?;
                let decoded = String::from_utf8(decoded).map_err(|_| {
                    invalid(
                        field,
                        format!(
                            "auth of registry {registry:?} in secret {:?} is not UTF-8",
                            s.name
                        ),
                    )
                })?;
                let Some((u, p)) = decoded.split_once(':') else {
                    return Err(invalid(
                        field,
                        format!(
                            "auth of registry {registry:?} in secret {:?} is not user:password",
                            s.name
                        ),
                    ));
                };
                (user, password) = (u.to_string(), p.to_string());
            }
            out.push(RegistryCredential {
                server,
                user_name: user,
                password,
            });
        }
    }
    Ok(out)
}

/// A docker-config registry key (`https://registry.example.com/v1/`, `registry.example.com`)
/// → the bare host[:port] ECI matches image references against.
fn server_of(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    k.split('/').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(t: &str, key: &str, json: &str) -> PullSecret {
        PullSecret {
            name: "s".into(),
            type_: t.into(),
            data: vec![(key.into(), json.as_bytes().to_vec())],
        }
    }

    #[test]
    fn dockerconfigjson_with_username_password_and_auth_only() {
        let auth = STANDARD.encode("robot:s3cr3t:with-colon");
        let json = format!(
            r#"{{"auths":{{"https://registry.example.com/v1/":{{"username":"u","password":"p"}},"reg.b.io":{{"auth":"{auth}"}}}}}}"#
        );
        let c = credentials(&[secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", &json)]).unwrap();
        assert_eq!(c.len(), 2);
        let b = c.iter().find(|c| c.server == "reg.b.io").unwrap();
        assert_eq!(
            (b.user_name.as_str(), b.password.as_str()),
            ("robot", "s3cr3t:with-colon")
        );
        let a = c
            .iter()
            .find(|c| c.server == "registry.example.com")
            .unwrap();
        assert_eq!((a.user_name.as_str(), a.password.as_str()), ("u", "p"));
    }

    #[test]
    fn legacy_dockercfg_and_first_secret_wins() {
        let auth = STANDARD.encode("old:pw");
        let first = secret(
            DOCKER_CFG,
            ".dockercfg",
            &format!(r#"{{"reg.io":{{"auth":"{auth}","email":"x"}}}}"#),
        );
        let second = secret(
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            r#"{"auths":{"reg.io":{"username":"n","password":"n"}}}"#,
        );
        let c = credentials(&[first, second]).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].user_name, "old");
    }

    #[test]
    fn other_types_skipped_and_bad_json_refused() {
        assert!(
            credentials(&[secret("Opaque", "x", "{}")])
                .unwrap()
                .is_empty()
        );
        let err = credentials(&[secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", "{not json")])
            .unwrap_err();
        assert!(format!("{err:?}").contains("spec.imagePullSecrets[0]"));
        let bad_auth = secret(DOCKER_CFG, ".dockercfg", r#"{"r.io":{"auth":"!!!"}}"#);
        assert!(credentials(&[bad_auth]).is_err());
    }
}
