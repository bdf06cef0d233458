//! `ExecContainerCommand`: a tiny, documented shell served over the emulator's own WebSocket.
//!
//! Commands understood (argv[0] may carry a path, e.g. `/bin/echo`):
//!
//! | command | output |
//! |---|---|
//! | `echo [-n] ARGS…` | the arguments |
//! | `env` / `printenv [NAME]` | the container's environment (`status.podIP` refs resolved, plus `HOSTNAME`, `PATH`) |
//! | `hostname` | the group name (or `HostName`) |
//! | `cat FILE…` | files the group was given: `ConfigFileVolume` files at their mount path (Base64 content decoded), `/etc/hostname`, `/etc/hosts` (incl. host aliases) |
//! | `ls DIR` | files under a config-file mount |
//! | `pwd`, `whoami`, `true`, `false`, `sleep N` (≤5 s) | as usual |
//! | `exit [N]` | ends with exit code N |
//! | `sh -c SCRIPT` / `bash -c SCRIPT` | runs `;`/`&&`-separated commands of this set |
//! | `sh` / `bash` (no `-c`) | interactive: each stdin line is run, until `exit` |
//!
//! Anything else prints `sh: CMD: not found` to stderr with exit code 127.
//!
//! Frames: the server sends **binary** frames whose first byte is the stream — `1` stdout,
//! `2` stderr, `3` the exit code as decimal text (last frame, then close). Clients send
//! stdin as binary frames starting with byte `0` (or plain text frames).

use base64::Engine as _;
use vnode_eci::model::{Container, VolumeType};

use crate::sim::Group;

/// Result of running a command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code.
    pub exit_code: i32,
}

/// What a command can see of its container.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// Environment (name, value).
    pub env: Vec<(String, String)>,
    /// Host name.
    pub hostname: String,
    /// Files: (absolute path, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// Working directory.
    pub working_dir: String,
}

impl ExecContext {
    /// Builds the context of `container` in `group`.
    pub fn new(group: &Group, container: &Container) -> Self {
        let hostname = group
            .spec
            .host_name
            .clone()
            .unwrap_or_else(|| group.spec.container_group_name.clone());
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOSTNAME".to_string(), hostname.clone()),
        ];
        for e in &container.env {
            let value = if e.field_ref.is_some() {
                group.ip.clone()
            } else {
                e.value.clone().unwrap_or_default()
            };
            env.push((e.key.clone(), value));
        }
        let mut files = vec![(
            "/etc/hostname".to_string(),
            format!("{hostname}\n").into_bytes(),
        )];
        let mut hosts = format!("127.0.0.1\tlocalhost\n{}\t{hostname}\n", group.ip);
        for a in &group.spec.host_aliases {
            hosts.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join(" ")));
        }
        files.push(("/etc/hosts".into(), hosts.into_bytes()));
        for m in &container.volume_mounts {
            let Some(v) = group.spec.volumes.iter().find(|v| v.name == m.name) else {
                continue;
            };
            if v.kind != Some(VolumeType::ConfigFileVolume) {
                continue;
            }
            for f in v.config_file_volume.iter().flat_map(|c| c.files.iter()) {
                let rel = match &m.sub_path {
                    Some(sub) if !sub.is_empty() => {
                        if f.path != *sub {
                            continue;
                        }
                        String::new()
                    }
                    _ => f.path.clone(),
                };
                let path = if rel.is_empty() {
                    m.mount_path.clone()
                } else {
                    format!(
                        "{}/{}",
                        m.mount_path.trim_end_matches('/'),
                        rel.trim_start_matches('/')
                    )
                };
                let content = base64::engine::general_purpose::STANDARD
                    .decode(f.content.trim())
                    .unwrap_or_else(|_| f.content.clone().into_bytes());
                files.push((path, content));
            }
        }
        Self {
            env,
            hostname,
            files,
            working_dir: container.working_dir.clone().unwrap_or_else(|| "/".into()),
        }
    }
}

/// Whether argv starts an interactive shell (no `-c`).
pub fn is_interactive_shell(argv: &[String]) -> bool {
    argv.len() == 1 && matches!(base(&argv[0]), "sh" | "bash" | "ash")
}

fn base(cmd: &str) -> &str {
    cmd.rsplit('/').next().unwrap_or(cmd)
}

/// Splits a script line into words, honouring single and double quotes.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for ch in line.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => cur.push(ch),
            None if ch == '\'' || ch == '"' => {
                quote = Some(ch);
                in_word = true;
            }
            None if ch.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(ch);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Runs a script (`;`/`&&`-separated). Returns output and whether `exit` was called.
pub async fn run_script(script: &str, ctx: &ExecContext) -> (ExecOutput, bool) {
    let mut out = ExecOutput::default();
    for stmt in script.split([';', '\n']) {
        for (i, part) in stmt.split("&&").enumerate() {
            if i > 0 && out.exit_code != 0 {
                break;
            }
            let argv = split_words(part);
            if argv.is_empty() {
                continue;
            }
            let (o, exited) = Box::pin(run(&argv, ctx)).await;
            out.stdout.push_str(&o.stdout);
            out.stderr.push_str(&o.stderr);
            out.exit_code = o.exit_code;
            if exited {
                return (out, true);
            }
        }
    }
    (out, false)
}

/// Runs one command. Returns output and whether it was `exit`.
pub async fn run(argv: &[String], ctx: &ExecContext) -> (ExecOutput, bool) {
    let mut out = ExecOutput::default();
    let Some(cmd) = argv.first() else {
        return (out, false);
    };
    let args = &argv[1..];
    match base(cmd) {
        "sh" | "bash" | "ash" if args.first().map(String::as_str) == Some("-c") => {
            let script = args.get(1).cloned().unwrap_or_default();
            let (o, _) = run_script(&script, ctx).await;
            return (o, false);
        }
        "echo" => {
            let (newline, words) = match args.first().map(String::as_str) {
                Some("-n") => (false, &args[1..]),
                _ => (true, args),
            };
            out.stdout = words.join(" ");
            if newline {
                out.stdout.push('\n');
            }
        }
        "env" => {
            for (k, v) in &ctx.env {
                out.stdout.push_str(&format!("{k}={v}\n"));
            }
        }
        "printenv" => match args.first() {
            Some(name) => match ctx.env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.stdout = format!("{v}\n"),
                None => out.exit_code = 1,
            },
            None => {
                for (k, v) in &ctx.env {
                    out.stdout.push_str(&format!("{k}={v}\n"));
                }
            }
        },
        "hostname" => out.stdout = format!("{}\n", ctx.hostname),
        "pwd" => out.stdout = format!("{}\n", ctx.working_dir),
        "whoami" => out.stdout = "root\n".into(),
        "true" => {}
        "false" => out.exit_code = 1,
        "sleep" => {
            let secs = args
                .first()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
                .clamp(0.0, 5.0);
            tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
        }
        "exit" => {
            out.exit_code = args
                .first()
                .and_then(|s| s.parse::<i32>().ok())
                .unwrap_or(0);
            return (out, true);
        }
        "cat" => {
            for path in args {
                match ctx.files.iter().find(|(p, _)| p == path) {
                    Some((_, content)) => out.stdout.push_str(&String::from_utf8_lossy(content)),
                    None => {
                        out.stderr
                            .push_str(&format!("cat: {path}: No such file or directory\n"));
                        out.exit_code = 1;
                    }
                }
            }
        }
        "ls" => {
            let dir = args
                .first()
                .cloned()
                .unwrap_or_else(|| ctx.working_dir.clone());
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            let mut names: Vec<&str> = ctx
                .files
                .iter()
                .filter_map(|(p, _)| p.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or(rest))
                .collect();
            names.sort_unstable();
            names.dedup();
            if names.is_empty() {
                out.stderr = format!("ls: {dir}: No such file or directory\n");
                out.exit_code = 1;
            } else {
                out.stdout = names.iter().map(|n| format!("{n}\n")).collect();
            }
        }
        other => {
            out.stderr = format!("sh: {other}: not found\n");
            out.exit_code = 127;
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ExecContext {
        ExecContext {
            env: vec![("A".into(), "1".into())],
            hostname: "web-1".into(),
            files: vec![("/etc/app/a.conf".into(), b"hello\n".to_vec())],
            working_dir: "/".into(),
        }
    }

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[tokio::test]
    async fn commands() {
        let c = ctx();
        assert_eq!(
            run(&argv(&["echo", "hi", "there"]), &c).await.0.stdout,
            "hi there\n"
        );
        assert_eq!(run(&argv(&["/bin/hostname"]), &c).await.0.stdout, "web-1\n");
        assert_eq!(
            run(&argv(&["cat", "/etc/app/a.conf"]), &c).await.0.stdout,
            "hello\n"
        );
        assert_eq!(run(&argv(&["cat", "/nope"]), &c).await.0.exit_code, 1);
        assert_eq!(
            run(&argv(&["ls", "/etc/app"]), &c).await.0.stdout,
            "a.conf\n"
        );
        assert_eq!(run(&argv(&["frobnicate"]), &c).await.0.exit_code, 127);
        let (o, _) = run(&argv(&["sh", "-c", "echo 'a b'; printenv A && exit 3"]), &c).await;
        assert_eq!((o.stdout.as_str(), o.exit_code), ("a b\n1\n", 3));
    }
}
