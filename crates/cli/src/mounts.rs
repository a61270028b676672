//! `--mount HOST[:CONTAINER][:ro]`, shared by `submit` and `notebook start`: the flag's spelling of
//! a spec's `mounts:` entry.

use std::path::{Component, Path, PathBuf};

use petri_domain::Mount;

/// Parses `HOST`, `HOST:CONTAINER`, `HOST:CONTAINER:ro` or `HOST:ro` (`:rw` is the default).
/// `HOST` alone appears at the same path inside; a relative `HOST` counts from `cwd`.
pub fn parse_mount(text: &str, cwd: &Path) -> anyhow::Result<Mount> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--mount `{text}`: {why}; write it as HOST, HOST:CONTAINER or HOST:CONTAINER:ro"
        )
    };
    let mut parts: Vec<&str> = text.split(':').collect();
    let option = match parts.as_slice() {
        [_, .., last @ ("ro" | "rw")] => Some(*last),
        _ => None,
    };
    if option.is_some() {
        parts.pop();
    }
    let (host, container) = match (parts.as_slice(), option) {
        ([host], _) => (*host, None),
        ([host, container], _) => (*host, Some(*container)),
        ([_, _, other], None) => return Err(bad(&format!("`{other}` is not `ro` or `rw`"))),
        _ => return Err(bad("too many `:`")),
    };
    if host.is_empty() {
        return Err(bad("the host folder is missing"));
    }
    let target = match container {
        None => None,
        Some("") => return Err(bad("the folder inside the container is missing")),
        Some(c) if !c.starts_with('/') => {
            return Err(bad(&format!(
                "the folder inside the container is an absolute path, not `{c}`"
            )));
        }
        Some(c) => Some(PathBuf::from(c)),
    };
    Ok(Mount {
        source: absolute(host, cwd),
        target,
        read_only: option == Some("ro"),
    })
}

/// `path` made absolute against `cwd`, with `.` and `..` resolved in the text (as `cd` does): the
/// daemon refuses `..` in a mount.
fn absolute(path: &str, cwd: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Mount> {
        parse_mount(text, Path::new("/home/me/project"))
    }

    #[test]
    fn every_spelling_parses() {
        let m = parse("/data:/mnt/data:ro").unwrap();
        assert_eq!(m.source, PathBuf::from("/data"));
        assert_eq!(m.target, Some(PathBuf::from("/mnt/data")));
        assert!(m.read_only);
        let m = parse("/data").unwrap();
        assert_eq!((m.target, m.read_only), (None, false));
        let m = parse("/data:ro").unwrap();
        assert_eq!((m.target, m.read_only), (None, true));
        let m = parse("/data:/data:rw").unwrap();
        assert_eq!(m.target, Some(PathBuf::from("/data")));
        assert!(!m.read_only);
    }

    #[test]
    fn a_relative_host_folder_counts_from_the_current_one() {
        assert_eq!(
            parse("data").unwrap().source,
            PathBuf::from("/home/me/project/data")
        );
        let m = parse("./../shared/./data:/data").unwrap();
        assert_eq!(m.source, PathBuf::from("/home/me/shared/data"));
    }

    #[test]
    fn malformed_values_say_what_is_wrong() {
        for (text, why) in [
            ("", "host folder is missing"),
            (":/data", "host folder is missing"),
            ("/data:", "inside the container is missing"),
            ("/data:data", "absolute path, not `data`"),
            ("/data:/data:rx", "`rx` is not `ro` or `rw`"),
            ("/a:/b:/c:ro", "too many `:`"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains("HOST:CONTAINER"), "{text}: {err}");
        }
    }
}
