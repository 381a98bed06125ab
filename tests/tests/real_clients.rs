//! Clients we did not write reach the daemon whatever `:authority` they send.
//!
//! Over a unix socket grpc-go (crictl, kubelet 1.26) and grpc-java send the
//! socket path, grpc-core (Python, Ruby, C++) its percent-encoding, tonic
//! `localhost`; the daemon must answer them all (ARCHITECTURE.md, "The CRI
//! socket and `:authority`").

use std::path::PathBuf;
use std::time::Duration;
use tests::daemon::Daemon;
use tests::fixtures::BUSYBOX;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The virtual environment and stubs `cargo xtask setup` makes.
fn grpc_python() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/grpc-python");
    let python = dir.join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `cargo xtask setup` (cargo xtask ci does)",
        python.display()
    );
    (python, dir.join("stubs"))
}

/// Runs `tests/python/cri_client.py` against `daemon` and returns the steps
/// it reported, failing with its whole output when it fails.
fn run_python_client(daemon: &Daemon, authority: Option<&str>) -> Vec<serde_json::Value> {
    let (python, stubs) = grpc_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/cri_client.py");
    let mut command = std::process::Command::new(python);
    command
        .arg(script)
        .arg(daemon.socket())
        .arg(stubs)
        .arg(BUSYBOX);
    if let Some(authority) = authority {
        command.args(["--authority", authority]);
    }
    let out = command.output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpcio client failed ({}):\n{stdout}\n{}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn steps(report: &[serde_json::Value]) -> Vec<&str> {
    report.iter().filter_map(|s| s["step"].as_str()).collect()
}

const ALL_STEPS: [&str; 8] = [
    "Version",
    "PullImage",
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ExecSync",
    "GetContainerEvents",
    "RemovePodSandbox",
];

#[tokio::test]
async fn python_grpcio_at_default_options_runs_a_pod() {
    let daemon = Daemon::start("").await;
    let report = run_python_client(&daemon, None);
    assert_eq!(steps(&report), ALL_STEPS, "{report:#?}");
    assert_eq!(report[0]["grpcio"], "1.85.1");
    assert_eq!(report[5]["stdout"], "hello from grpcio\n");
}

#[tokio::test]
async fn python_grpcio_sending_the_raw_socket_path_runs_a_pod() {
    // What grpc-go and grpc-java put in `:authority`.
    let daemon = Daemon::start("").await;
    let path = daemon.socket().display().to_string();
    let report = run_python_client(&daemon, Some(&path));
    assert_eq!(steps(&report), ALL_STEPS, "{report:#?}");
}

/// An HPACK string literal: a 7-bit-prefix length (no Huffman), then bytes.
fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    hpack_integer(out, 0, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// An HPACK integer with an `prefix_bits`-bit prefix after `flags`.
fn hpack_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// How a request's `:authority` is sent.
enum Authority<'a> {
    /// Not sent at all.
    Absent,
    /// A literal without indexing (static name index 1).
    Literal(&'a [u8]),
    /// A literal with incremental indexing: it enters the dynamic table.
    Indexed(&'a [u8]),
    /// The newest dynamic table entry (index 62), by reference.
    FromTable,
}

/// The HPACK block of a gRPC Version request with `authority`.
fn version_request_headers(authority: &Authority) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static)
    hpack_integer(&mut block, 0x00, 4, 4); // :path, literal without indexing
    hpack_string(&mut block, b"/runtime.v1.RuntimeService/Version");
    match authority {
        Authority::Absent => {}
        Authority::Literal(value) => {
            hpack_integer(&mut block, 0x00, 4, 1);
            hpack_string(&mut block, value);
        }
        Authority::Indexed(value) => {
            hpack_integer(&mut block, 0x40, 6, 1);
            hpack_string(&mut block, value);
        }
        Authority::FromTable => hpack_integer(&mut block, 0x80, 7, 62),
    }
    hpack_integer(&mut block, 0x00, 4, 31); // content-type
    hpack_string(&mut block, b"application/grpc");
    block.push(0x00); // te: trailers, new name
    hpack_string(&mut block, b"te");
    hpack_string(&mut block, b"trailers");
    block
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// What came back on one stream.
#[derive(Debug, Default)]
struct StreamAnswer {
    headers: usize,
    data: Vec<u8>,
    reset: bool,
    ended: bool,
}

#[tokio::test]
async fn a_hand_written_request_gets_a_grpc_answer_whatever_its_authority() {
    let daemon = Daemon::start("").await;
    let path = daemon.socket().display().to_string();
    let encoded = path.replace('/', "%2F");
    let cases: Vec<(&str, Authority)> = vec![
        (
            "the socket path (grpc-go, grpc-java)",
            Authority::Literal(path.as_bytes()),
        ),
        (
            "the percent-encoded path (grpc-core)",
            Authority::Literal(encoded.as_bytes()),
        ),
        ("localhost (tonic)", Authority::Literal(b"localhost")),
        ("no :authority", Authority::Absent),
        ("garbage", Authority::Literal(b"a b{}|\"\\^`")),
        ("empty", Authority::Literal(b"")),
        (
            "not UTF-8, indexed",
            Authority::Indexed(&[0xff, 0xfe, b'/', 0x80]),
        ),
        // The entry the previous request added, by reference: the decoder
        // kept it (with the size the encoder counted) instead of failing.
        ("the not-UTF-8 entry by reference", Authority::FromTable),
    ];
    let mut stream = tokio::net::UnixStream::connect(daemon.socket())
        .await
        .unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    // All on one connection: no case may cost the connection either.
    for (i, (_, authority)) in cases.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        out.extend(frame(
            HEADERS,
            END_HEADERS,
            id,
            &version_request_headers(authority),
        ));
        // An empty VersionRequest: uncompressed, zero-length message.
        out.extend(frame(DATA, END_STREAM, id, &[0, 0, 0, 0, 0]));
    }
    stream.write_all(&out).await.unwrap();

    let mut answers: Vec<StreamAnswer> = cases.iter().map(|_| StreamAnswer::default()).collect();
    let mut buf = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 16384];
        while !answers.iter().all(|a| a.ended || a.reset) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed: {answers:?}");
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                assert_ne!(
                    kind, GOAWAY,
                    "the server gave up the connection: {answers:?}"
                );
                if kind == SETTINGS && flags & 1 == 0 {
                    stream.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
                }
                let Some(answer) = id
                    .checked_sub(1)
                    .map(|i| i as usize / 2)
                    .and_then(|i| answers.get_mut(i))
                else {
                    continue;
                };
                match kind {
                    HEADERS => answer.headers += 1,
                    DATA => answer.data.extend(payload),
                    RST_STREAM => answer.reset = true,
                    _ => {}
                }
                if flags & END_STREAM != 0 && matches!(kind, HEADERS | DATA) {
                    answer.ended = true;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .unwrap_or_else(|_| panic!("no answer within 20 s: {answers:?}"));
    for ((what, _), answer) in cases.iter().zip(&answers) {
        assert!(!answer.reset, "{what}: the stream was reset: {answer:?}");
        // Response headers, then the message, then trailers.
        assert_eq!(answer.headers, 2, "{what}: {answer:?}");
        let message = String::from_utf8_lossy(&answer.data);
        assert!(message.contains("cri-server"), "{what}: {message:?}");
    }
}

#[tokio::test]
async fn every_verbose_info_value_is_json_as_crictl_expects() {
    // crictl info/inspect/inspectp/inspecti decode each value of `info` as
    // JSON and fail the whole command on the first that is not.
    let daemon = Daemon::start("").await;
    let image = daemon.pull(BUSYBOX).await;
    let pod = daemon
        .run_pod(tests::fixtures::pod_config("verbose-info"), "")
        .await;
    let container = daemon
        .create(
            &pod,
            tests::fixtures::container_config("sleeper", BUSYBOX, &["sleep", "600"]),
        )
        .await;
    let mut runtime = daemon.runtime().await;
    use cri_api::v1 as cri;
    let infos = [
        (
            "Status",
            runtime
                .status(cri::StatusRequest { verbose: true })
                .await
                .unwrap()
                .into_inner()
                .info,
        ),
        ("PodSandboxStatus", daemon.pod_status(&pod, true).await.info),
        (
            "ContainerStatus",
            runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: container.clone(),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner()
                .info,
        ),
        (
            "ImageStatus",
            daemon
                .images()
                .await
                .image_status(cri::ImageStatusRequest {
                    image: tests::fixtures::image_spec(&image),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner()
                .info,
        ),
    ];
    for (call, info) in infos {
        assert!(!info.is_empty(), "{call}: no verbose info");
        for (key, value) in info {
            assert!(
                serde_json::from_str::<serde_json::Value>(&value).is_ok(),
                "{call} info[{key:?}] is not JSON: {value}"
            );
        }
    }
    daemon.remove_pod(&pod).await;
}
