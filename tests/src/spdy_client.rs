//! A small test-only SPDY/3.1 client for the streaming server: the HTTP
//! upgrade, SYN_STREAM with zlib-compressed headers, DATA with FIN, and
//! reading frames back. Written apart from the server's implementation (its
//! header dictionary is rebuilt from the spec's word list) so the two check
//! each other.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// The connection under the session: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The SPDY/3 header dictionary, built from the words of
/// draft-mbelshe-httpbis-spdy-00 section 2.6.10.1.
pub fn dictionary() -> Vec<u8> {
    let words = "options head post put delete trace accept accept-charset accept-encoding \
        accept-language accept-ranges age allow authorization cache-control connection \
        content-base content-encoding content-language content-length content-location \
        content-md5 content-range content-type date etag expect expires from host if-match \
        if-modified-since if-none-match if-range if-unmodified-since last-modified location \
        max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after \
        server te trailer transfer-encoding upgrade user-agent vary via warning \
        www-authenticate method get status";
    let mut list: Vec<&str> = words.split_whitespace().collect();
    list.extend([
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ]);
    let mut d = Vec::new();
    for w in list {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    d
}

/// A frame as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// DATA.
    Data {
        /// Stream.
        stream: u32,
        /// Payload.
        data: Vec<u8>,
        /// FLAG_FIN set.
        fin: bool,
    },
    /// SYN_REPLY for a stream we opened.
    Reply(u32),
    /// RST_STREAM.
    Reset(u32, u32),
    /// PING echo.
    Ping(u32),
    /// GOAWAY.
    GoAway,
    /// WINDOW_UPDATE or anything else.
    Other,
}

/// A connected SPDY session.
pub struct SpdyClient {
    io: Box<dyn Io>,
    zlib: Compress,
    unzlib: Decompress,
    dict: Vec<u8>,
    next_id: u32,
    buf: Vec<u8>,
    /// The protocol the server chose (`X-Stream-Protocol-Version`).
    pub protocol: String,
}

/// Connects to a streaming URL and upgrades to SPDY/3.1 offering
/// `protocols`; `Err(status)` when the server refuses.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<SpdyClient, u16> {
    let rest = url.strip_prefix("http://").ok_or(0u16)?;
    let (host, path) = rest.split_once('/').ok_or(0u16)?;
    let io = TcpStream::connect(host).await.map_err(|_| 0u16)?;
    upgrade(Box::new(io), host, path, protocols).await
}

/// Like [`connect`] for an `https://` URL, trusting only `ca_pem` (a PEM
/// certificate) for the server name `server_name`.
pub async fn connect_tls(
    url: &str,
    protocols: &[&str],
    ca_pem: &str,
    server_name: &str,
) -> Result<SpdyClient, u16> {
    use rustls_pki_types::pem::PemObject;
    let rest = url.strip_prefix("https://").ok_or(0u16)?;
    let (host, path) = rest.split_once('/').ok_or(0u16)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|_| 0u16)?).map_err(|_| 0u16)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| 0u16)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string()).map_err(|_| 0u16)?;
    let tcp = TcpStream::connect(host).await.map_err(|_| 0u16)?;
    let io = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|_| 0u16)?;
    upgrade(Box::new(io), host, path, protocols).await
}

async fn upgrade(
    mut io: Box<dyn Io>,
    host: &str,
    path: &str,
    protocols: &[&str],
) -> Result<SpdyClient, u16> {
    let mut request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for p in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    io.write_all(request.as_bytes()).await.map_err(|_| 0u16)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte).await.map_err(|_| 0u16)? == 0 {
            return Err(0);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(status);
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let dict = dictionary();
    let mut zlib = Compress::new(Compression::default(), true);
    zlib.set_dictionary(&dict).expect("dictionary");
    Ok(SpdyClient {
        io,
        zlib,
        unzlib: Decompress::new(true),
        dict,
        next_id: 1,
        buf: Vec::new(),
        protocol,
    })
}

impl SpdyClient {
    async fn control(&mut self, kind: u16, flags: u8, body: &[u8]) {
        let mut f = vec![0x80, 3];
        f.extend_from_slice(&kind.to_be_bytes());
        f.extend_from_slice(&((u32::from(flags) << 24) | body.len() as u32).to_be_bytes());
        f.extend_from_slice(body);
        self.io.write_all(&f).await.expect("write control frame");
    }

    /// Opens a stream with `headers`; returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut block = Vec::with_capacity(raw.len() + 1024);
        self.zlib
            .compress_vec(&raw, &mut block, FlushCompress::Sync)
            .expect("compress");
        let id = self.next_id;
        self.next_id += 2;
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&block);
        self.control(1, 0, &body).await;
        id
    }

    /// Sends DATA on `stream`.
    pub async fn send(&mut self, stream: u32, data: &[u8], fin: bool) {
        let mut f = stream.to_be_bytes().to_vec();
        let flags = u32::from(fin);
        f.extend_from_slice(&((flags << 24) | data.len() as u32).to_be_bytes());
        f.extend_from_slice(data);
        self.io.write_all(&f).await.expect("write data frame");
    }

    /// Sends a PING.
    pub async fn ping(&mut self, id: u32) {
        self.control(6, 0, &id.to_be_bytes()).await;
    }

    /// Grants the server `delta` more bytes on `stream` (0 = the session).
    pub async fn window_update(&mut self, stream: u32, delta: u32) {
        let mut body = stream.to_be_bytes().to_vec();
        body.extend_from_slice(&delta.to_be_bytes());
        self.control(9, 0, &body).await;
    }

    /// Sends SETTINGS with SETTINGS_INITIAL_WINDOW_SIZE (id 7) = `size`.
    pub async fn initial_window(&mut self, size: u32) {
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend_from_slice(&7u32.to_be_bytes()); // flags 0, id 7
        body.extend_from_slice(&size.to_be_bytes());
        self.control(4, 0, &body).await;
    }

    /// Writes raw bytes (for protocol-violation tests).
    pub async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.io.write_all(bytes).await;
    }

    /// The next frame; `None` when the connection ends.
    pub async fn next(&mut self) -> Option<Received> {
        loop {
            if self.buf.len() >= 8 {
                let len = (u32::from_be_bytes([0, self.buf[5], self.buf[6], self.buf[7]])) as usize;
                if self.buf.len() >= 8 + len {
                    let frame: Vec<u8> = self.buf.drain(..8 + len).collect();
                    return Some(self.decode(&frame));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn decode(&mut self, f: &[u8]) -> Received {
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let body = &f[8..];
        if f[0] & 0x80 == 0 {
            return Received::Data {
                stream: be(f) & 0x7fff_ffff,
                data: body.to_vec(),
                fin: f[4] & 1 == 1,
            };
        }
        match u16::from_be_bytes([f[2], f[3]]) {
            2 => {
                // Keep the decompression context in step with the server.
                let mut out = Vec::with_capacity(4096);
                if let Err(e) =
                    self.unzlib
                        .decompress_vec(&body[4..], &mut out, FlushDecompress::Sync)
                {
                    if e.needs_dictionary().is_some() {
                        self.unzlib.set_dictionary(&self.dict).expect("dict");
                        let consumed = self.unzlib.total_in() as usize;
                        let _ = self.unzlib.decompress_vec(
                            &body[4 + consumed.min(body.len() - 4)..],
                            &mut out,
                            FlushDecompress::Sync,
                        );
                    }
                }
                Received::Reply(be(body) & 0x7fff_ffff)
            }
            3 => Received::Reset(be(body) & 0x7fff_ffff, be(&body[4..])),
            6 => Received::Ping(be(body)),
            7 => Received::GoAway,
            _ => Received::Other,
        }
    }

    /// Reads until every stream has sent FIN or the session ends; returns
    /// the data received per stream.
    pub async fn collect(&mut self, streams: &[u32]) -> HashMap<u32, Vec<u8>> {
        let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut open: Vec<u32> = streams.to_vec();
        while !open.is_empty() {
            match self.next().await {
                Some(Received::Data {
                    stream,
                    data: d,
                    fin,
                }) => {
                    data.entry(stream).or_default().extend(d);
                    if fin {
                        open.retain(|s| *s != stream);
                    }
                }
                Some(Received::GoAway) | None => break,
                Some(_) => {}
            }
        }
        data
    }

    /// Reads until stream `stream` has delivered `needle`; returns what it read.
    pub async fn read_until(&mut self, stream: u32, needle: &str) -> String {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match self.next().await {
                Some(Received::Data {
                    stream: s, data, ..
                }) if s == stream => seen.extend(data),
                Some(Received::GoAway) | None => break,
                Some(_) => {}
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }
}
