//! HTTP/1.1 as etcd's JSON gateway speaks it: a request out, an answer's head and body in
//! (by length or chunked, with the trailer fields an error answer ends with), and a chunked
//! body read as one stream for a watch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

pub(super) struct StreamError {
    pub(super) err: String,
    /// Nothing came back on a kept connection: the server had closed it.
    pub(super) is_stale: bool,
}

pub(super) fn send(stream: &mut TcpStream, path: &str, body: &str) -> Result<(), StreamError> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).map_err(|e| StreamError {
        err: e.to_string(),
        is_stale: true,
    })
}

pub(super) struct Head {
    pub(super) status: u16,
    length: Option<usize>,
    chunked: bool,
    keep: bool,
}

pub(super) struct Response {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) keep: bool,
}

pub(super) fn read_head(r: &mut impl BufRead) -> Result<Head, StreamError> {
    let mut line = String::new();
    let io = |e: std::io::Error, stale: bool| StreamError {
        err: e.to_string(),
        is_stale: stale,
    };
    // Only a connection the server closed (EOF, reset) is stale; a timeout is not.
    let n = r.read_line(&mut line).map_err(|e| {
        let closed = matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        );
        io(e, closed)
    })?;
    if n == 0 {
        return Err(StreamError {
            err: "the connection closed".into(),
            is_stale: true,
        });
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StreamError {
            err: format!("not an HTTP answer: {line:?}"),
            is_stale: false,
        })?;
    let mut head = Head {
        status,
        length: None,
        chunked: false,
        keep: true,
    };
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| io(e, false))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => head.length = value.parse().ok(),
            "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => head.keep = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Ok(head)
}

pub(super) fn read_response(r: &mut impl BufRead) -> Result<Response, StreamError> {
    let head = read_head(r)?;
    let io = |e: std::io::Error| StreamError {
        err: e.to_string(),
        is_stale: false,
    };
    let mut body = Vec::new();
    if head.chunked {
        loop {
            let size = chunk_size(r).map_err(io)?;
            if size == 0 {
                // The trailer fields up to the empty line that ends the message: etcd's
                // gateway ends an error answer with one, and a line left unread here was
                // taken for the head of the next answer ("not an HTTP answer").
                let mut line = String::new();
                while r.read_line(&mut line).map_err(io)? > 0 && line.trim_end() != "" {
                    line.clear();
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).map_err(io)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).map_err(io)?;
        }
    } else if let Some(n) = head.length {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    } else {
        r.read_to_end(&mut body).map_err(io)?;
        return Ok(Response {
            status: head.status,
            body,
            keep: false,
        });
    }
    Ok(Response {
        status: head.status,
        body,
        keep: head.keep,
    })
}

fn chunk_size(r: &mut impl BufRead) -> std::io::Result<usize> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let hex = line.trim().split(';').next().unwrap_or("");
    usize::from_str_radix(hex, 16).map_err(|_| std::io::ErrorKind::InvalidData.into())
}

/// A chunked body, read as one stream.
pub(super) struct Chunked {
    inner: BufReader<TcpStream>,
    left: usize,
    done: bool,
}

impl Chunked {
    /// The body that follows a head read from `inner`.
    pub(super) fn new(inner: BufReader<TcpStream>) -> Chunked {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }

    pub(super) fn stream(&self) -> &TcpStream {
        self.inner.get_ref()
    }
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            self.left = chunk_size(&mut self.inner)?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_with_trailer_fields_leaves_the_next_answer_whole() {
        // As etcd 3.4's gateway answers a put under a lease that does not exist (a 404).
        let stream = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      4\r\n{\"a\"\r\n2\r\n:1\r\n1\r\n}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let mut r = std::io::Cursor::new(stream.as_bytes());
        let first = read_response(&mut r).map_err(|e| e.err).unwrap();
        assert_eq!(first.body, br#"{"a":1}"#);
        let second = read_response(&mut r).map_err(|e| e.err).unwrap();
        assert_eq!((second.status, &second.body[..]), (200, &b"{}"[..]));
    }
}
