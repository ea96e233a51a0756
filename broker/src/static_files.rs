//! Static files for `[http] static_dir`: an app's web page served by the broker itself.
//!
//! Only plain path segments are served (no `..`, no hidden files, no percent escapes), the
//! resolved file must still lie inside the directory after symlinks are followed, and a
//! directory serves its `index.html` or nothing: there are no listings.

use std::path::{Path, PathBuf};

use bytes::Bytes;

/// A file to send.
#[derive(Debug)]
pub struct StaticFile {
    /// Its bytes.
    pub body: Bytes,
    /// Its content type.
    pub content_type: &'static str,
}

/// Resolves `url_path` under `root` and reads it; `None` means 404.
pub async fn lookup(root: &Path, url_path: &str) -> Option<StaticFile> {
    let relative = safe_relative(url_path)?;
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let mut path = tokio::fs::canonicalize(root.join(&relative)).await.ok()?;
    if !path.starts_with(&root) {
        return None;
    }
    if tokio::fs::metadata(&path).await.ok()?.is_dir() {
        path = tokio::fs::canonicalize(path.join("index.html"))
            .await
            .ok()?;
        if !path.starts_with(&root) {
            return None;
        }
    }
    let meta = tokio::fs::metadata(&path).await.ok()?;
    if !meta.is_file() {
        return None;
    }
    let body = tokio::fs::read(&path).await.ok()?;
    Some(StaticFile {
        body: Bytes::from(body),
        content_type: content_type(&path),
    })
}

/// The request path as a relative file path, or `None` if it has anything but plain segments.
fn safe_relative(url_path: &str) -> Option<PathBuf> {
    let trimmed = url_path.strip_prefix('/')?;
    let mut out = PathBuf::new();
    for seg in trimmed.split('/') {
        if seg.is_empty() {
            continue;
        }
        let plain = !seg.starts_with('.')
            && seg.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+')
            });
        if !plain {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_segments() {
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative("/a/b.js"), Some(PathBuf::from("a/b.js")));
        assert_eq!(safe_relative("/../etc/passwd"), None);
        assert_eq!(safe_relative("/a/%2e%2e/b"), None);
        assert_eq!(safe_relative("/.git/config"), None);
        assert_eq!(safe_relative("/a\\b"), None);
        assert_eq!(safe_relative("relative"), None);
    }

    #[test]
    fn types() {
        assert_eq!(
            content_type(Path::new("a.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("a.mjs")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.bin")), "application/octet-stream");
    }
}
