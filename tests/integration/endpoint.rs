//! A local AWS endpoint in front of the emulator, for the calls the emulator lacks: requests
//! that `answer` claims are answered here and recorded, so a test can check the real wire
//! request; every other request is forwarded to the emulator untouched.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::aws_endpoint;

/// One HTTP request as it came over the wire.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The request line, e.g. `GET /path?query HTTP/1.1`.
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// An answer: HTTP status line, content type and body.
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

/// Decides whether a request is answered here: it sees the request and the ones answered
/// before it.
pub type Answer = Arc<dyn Fn(&Request, &[Request]) -> Option<Response> + Send + Sync>;

pub struct LocalEndpoint {
    pub url: String,
    answered: Arc<Mutex<Vec<Request>>>,
}

impl LocalEndpoint {
    pub async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&answered);
        let upstream = aws_endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (recorded, answer) = (Arc::clone(&recorded), Arc::clone(&answer));
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &upstream, &recorded, &answer).await;
                });
            }
        });
        LocalEndpoint { url, answered }
    }

    /// The requests answered here, in order.
    pub fn answered(&self) -> Vec<Request> {
        self.answered.lock().expect("lock").clone()
    }
}

/// One request per connection (answered with `Connection: close`).
async fn serve(
    mut stream: TcpStream,
    upstream: &str,
    answered: &Mutex<Vec<Request>>,
    answer: &Answer,
) -> std::io::Result<()> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buffer[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut request = Request {
        head,
        body: Vec::new(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buffer[..n]);
    }
    request.body = raw[head_end..].to_vec();
    let response = {
        let mut answered = answered.lock().expect("lock");
        let response = answer(&request, &answered);
        if response.is_some() {
            answered.push(request.clone());
        }
        response
    };
    if let Some(Response {
        status,
        content_type,
        body,
    }) = response
    {
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        return stream.shutdown().await;
    }
    // Forward to the emulator, asking it to close so its response ends at EOF.
    let mut forwarded = Vec::with_capacity(raw.len() + 20);
    for line in request.head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            forwarded.extend_from_slice(line.as_bytes());
            forwarded.extend_from_slice(b"\r\n");
        }
    }
    forwarded.extend_from_slice(b"connection: close\r\n\r\n");
    forwarded.extend_from_slice(&request.body);
    let mut emulator = TcpStream::connect(upstream).await?;
    emulator.write_all(&forwarded).await?;
    let mut response = Vec::new();
    emulator.read_to_end(&mut response).await?;
    stream.write_all(&response).await?;
    stream.shutdown().await
}
