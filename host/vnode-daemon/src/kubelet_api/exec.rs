//! `/exec`: the Kubernetes remote-command WebSocket protocol (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io`) on the kubelet side, bridged to an [`ExecSession`] from the backend.
//!
//! Framing (both versions): binary messages whose first byte is the channel — 0 stdin,
//! 1 stdout, 2 stderr, 3 error (the final `metav1.Status`, which carries the exit code),
//! 4 resize (`{"Width":…,"Height":…}`). v5 adds channel 255: `[255, 0]` from the client
//! closes stdin. The API server relays this upgrade byte for byte (see
//! `vnode-apiserver`'s `pods/exec` proxy); kubectl ≥ 1.30 speaks it. SPDY (older kubectl)
//! is refused with a clear message.
//!
//! Bounded: one message in flight per direction (each send is awaited before the next
//! read), messages capped at [`MAX_MESSAGE_BYTES`]; when either side ends, both are closed.

use std::pin::Pin;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, StreamExt};

use super::BackendError;

/// Largest WebSocket message accepted from the client or passed on.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What `kubectl exec` asked for (the kubelet's query: repeated `command`, and the
/// `stdin`/`stdout`/`stderr`/`tty` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// argv.
    pub command: Vec<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr (ignored with `tty`: a terminal has one output stream).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

impl ExecRequest {
    /// Parses and validates the raw query string.
    pub fn from_query(query: &str) -> Result<Self, BackendError> {
        let mut req = ExecRequest {
            command: Vec::new(),
            stdin: false,
            stdout: false,
            stderr: false,
            tty: false,
        };
        let flag = |name: &str, v: &str| -> Result<bool, BackendError> {
            match v {
                "" | "1" | "true" | "True" => Ok(true),
                "0" | "false" | "False" => Ok(false),
                other => Err(BackendError::InvalidInput(format!(
                    "{name}={other:?} must be true or false"
                ))),
            }
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "command" => req.command.push(v.into_owned()),
                "input" | "stdin" => req.stdin = flag("stdin", &v)?,
                "output" | "stdout" => req.stdout = flag("stdout", &v)?,
                "error" | "stderr" => req.stderr = flag("stderr", &v)?,
                "tty" => req.tty = flag("tty", &v)?,
                _ => {}
            }
        }
        if req.command.is_empty() {
            return Err(BackendError::InvalidInput(
                "you must specify a command (query parameter `command`)".into(),
            ));
        }
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(BackendError::InvalidInput(
                "you must specify at least one of stdin, stdout, stderr".into(),
            ));
        }
        Ok(req)
    }
}

/// Input for the remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    /// Bytes for stdin.
    Stdin(Bytes),
    /// Terminal size changed.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// The client closed stdin (v5 only).
    CloseStdin,
}

/// Output of the remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// Bytes on stdout.
    Stdout(Bytes),
    /// Bytes on stderr.
    Stderr(Bytes),
    /// The command ended with this exit code (the last item).
    Exited(i32),
}

/// A running remote command: its output, and a sink for its input. Dropping both ends the
/// session on the backend's side.
pub struct ExecSession {
    /// stdout/stderr and finally the exit code. The stream ending without
    /// [`ExecOutput::Exited`] means the exit status is unknown.
    pub output: BoxStream<'static, Result<ExecOutput, BackendError>>,
    /// stdin, resize, stdin close.
    pub input: Pin<Box<dyn Sink<ExecInput, Error = BackendError> + Send>>,
}

/// The final `metav1.Status` on channel 3, as the kubelet writes it: `Success`, or
/// `Failure`/`NonZeroExitCode` with the code in `details.causes[ExitCode]` (what kubectl
/// turns into its own exit code).
pub fn exit_status(command: &[String], outcome: Result<i32, String>) -> serde_json::Value {
    match outcome {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        }),
        Err(message) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500
        }),
    }
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// Decodes one client message into an input (or `None` for messages that carry none).
fn decode_client(msg: &[u8], request: &ExecRequest, v5: bool) -> Option<ExecInput> {
    let (&channel, data) = msg.split_first()?;
    match channel {
        STDIN if request.stdin && !data.is_empty() => {
            Some(ExecInput::Stdin(Bytes::copy_from_slice(data)))
        }
        RESIZE => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            let size: Size = serde_json::from_slice(data).ok()?;
            Some(ExecInput::Resize {
                width: size.width,
                height: size.height,
            })
        }
        CLOSE if v5 && data.first() == Some(&STDIN) => Some(ExecInput::CloseStdin),
        _ => None,
    }
}

/// Bridges the client's WebSocket and the backend session until either ends.
pub async fn bridge(mut socket: WebSocket, request: ExecRequest, session: ExecSession) {
    let v5 = socket
        .protocol()
        .is_some_and(|p| p.as_bytes() == PROTOCOLS[0].as_bytes());
    let ExecSession {
        mut output,
        mut input,
    } = session;
    let mut stdin_open = request.stdin;
    let outcome: Option<Result<i32, String>> = loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    let Some(event) = decode_client(&data, &request, v5) else { continue };
                    if matches!(event, ExecInput::Stdin(_)) && !stdin_open {
                        continue;
                    }
                    if event == ExecInput::CloseStdin {
                        stdin_open = false;
                    }
                    if let Err(e) = input.send(event).await {
                        tracing::debug!(error = %e, "exec input to the backend failed");
                        break Some(Err(format!("exec stream to the container failed: {e}")));
                    }
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "exec client stream failed");
                    break None;
                }
                // Text (base64 protocols are not offered), ping/pong (answered by the socket).
                Some(Ok(_)) => {}
            },
            out = output.next() => {
                let msg = match out {
                    Some(Ok(ExecOutput::Stdout(b))) if request.stdout || request.tty => framed(STDOUT, &b),
                    Some(Ok(ExecOutput::Stderr(b))) if request.tty && request.stdout => framed(STDOUT, &b),
                    Some(Ok(ExecOutput::Stderr(b))) if request.stderr => framed(STDERR, &b),
                    Some(Ok(ExecOutput::Stdout(_) | ExecOutput::Stderr(_))) => continue,
                    Some(Ok(ExecOutput::Exited(code))) => break Some(Ok(code)),
                    Some(Err(e)) => break Some(Err(format!("exec stream from the container failed: {e}"))),
                    None => break Some(Err("the container's exec stream ended without an exit status".into())),
                };
                if socket.send(msg).await.is_err() {
                    break None;
                }
            }
        }
    };
    // Close the backend side first (drop = close its WebSocket), then tell the client.
    let _ = input.close().await;
    drop(output);
    if let Some(outcome) = outcome {
        let status = exit_status(&request.command, outcome);
        let _ = socket
            .send(framed(ERROR, status.to_string().as_bytes()))
            .await;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_queries() {
        let r = ExecRequest::from_query(
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=true&tty=false",
        )
        .expect("valid");
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert!(r.stdin && r.stdout && r.stderr && !r.tty);
        assert!(matches!(
            ExecRequest::from_query("stdout=true"),
            Err(BackendError::InvalidInput(_))
        ));
        assert!(matches!(
            ExecRequest::from_query("command=ls"),
            Err(BackendError::InvalidInput(_))
        ));
        assert!(matches!(
            ExecRequest::from_query("command=ls&stdout=maybe"),
            Err(BackendError::InvalidInput(_))
        ));
    }

    #[test]
    fn decodes_client_channels() {
        let req = ExecRequest::from_query("command=sh&stdin=true&stdout=true").expect("valid");
        assert_eq!(
            decode_client(b"\x00ls\n", &req, true),
            Some(ExecInput::Stdin(Bytes::from_static(b"ls\n")))
        );
        assert_eq!(
            decode_client(b"\x04{\"Width\":80,\"Height\":24}", &req, true),
            Some(ExecInput::Resize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            decode_client(&[255, 0], &req, true),
            Some(ExecInput::CloseStdin)
        );
        assert_eq!(decode_client(&[255, 0], &req, false), None);
        assert_eq!(decode_client(b"", &req, true), None);
        let no_stdin = ExecRequest::from_query("command=ls&stdout=true").expect("valid");
        assert_eq!(decode_client(b"\x00x", &no_stdin, true), None);
    }

    #[test]
    fn status_carries_the_exit_code_like_the_kubelet() {
        let cmd = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(exit_status(&cmd, Ok(0))["status"], "Success");
        let s = exit_status(&cmd, Ok(3));
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&cmd, Err("x".into()))["status"], "Failure");
    }
}
