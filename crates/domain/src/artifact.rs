//! Artifacts as the rest of Petri names them: a content digest, what kind of thing it names, a
//! folder's manifest, and what the garbage collector and the usage report answer. The store
//! itself (files, hashing, references) is `petri-artifacts`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The prefix of every digest.
pub const SHA256_PREFIX: &str = "sha256:";

/// A content digest, `sha256:` and 64 lower-case hex digits. Nothing else parses, so a digest is
/// always safe to use as a file name (no `/`, no `..`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(
    value_type = String,
    example = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
)]
pub struct Digest(String);

impl Digest {
    /// The digest of a SHA-256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(SHA256_PREFIX.len() + 64);
        s.push_str(SHA256_PREFIX);
        for b in hash {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        Digest(s)
    }

    /// The 64 hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0[SHA256_PREFIX.len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown: String = s.chars().take(80).collect();
        let Some(hex) = s.strip_prefix(SHA256_PREFIX) else {
            return Err(format!(
                "`{shown}` is not an artifact digest: it must start with `sha256:`"
            ));
        };
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "`{shown}` is not an artifact digest: `sha256:` must be followed by exactly 64 \
                 lower-case hex digits"
            ));
        }
        Ok(Digest(s.to_string()))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a digest names: one file's bytes, or a folder (its manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "file" => Some(Kind::File),
            "dir" => Some(Kind::Dir),
            _ => None,
        }
    }
}

/// The version of the manifest format written today.
pub const MANIFEST_VERSION: u32 = 1;

/// A folder as stored: its files (sorted by path, `/`-separated, relative), each by digest, and
/// its empty folders. A folder's digest is the digest of this manifest's JSON, so the same files
/// give the same digest whatever their times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format's version (1); it also marks the blob as a manifest.
    pub petri_manifest: u32,
    pub files: Vec<ManifestFile>,
    /// Folders with nothing inside, so the tree comes back as it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub empty_dirs: Vec<String>,
}

/// One file of a stored folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    pub executable: bool,
}

/// How much the artifact store holds, from its records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactUsage {
    /// Blobs something refers to (a pipeline output, a cache entry, a model, a folder).
    pub referenced: BlobCount,
    /// Blobs nothing refers to: the next garbage collection removes them once the grace
    /// period has passed.
    pub unreferenced: BlobCount,
    /// Bytes the store may hold before cache entries are dropped (`artifacts.max_size`).
    pub max_size: u64,
}

/// A number of blobs and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobCount {
    pub count: u64,
    pub bytes: u64,
}

/// What `POST /api/v1/gc` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Only say what would be removed; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a garbage collection removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GcReport {
    pub dry_run: bool,
    /// The blobs removed, with their sizes.
    pub removed: Vec<RemovedBlob>,
    /// The bytes they held.
    pub freed_bytes: u64,
    /// Cache entries (`cache:` holders) dropped: unused for longer than `artifacts.max_age`, or
    /// the oldest-used ones while the store was over `artifacts.max_size`.
    pub dropped_holders: Vec<String>,
    /// What the store holds afterwards (in a dry run: would hold).
    pub kept: BlobCount,
    /// The logs and output folders of finished jobs the retention limits let go (with
    /// `petri gc`; the daemon's periodic rounds report in its log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<crate::RetentionReport>,
}

/// One blob a garbage collection removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RemovedBlob {
    pub digest: Digest,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_and_64_lower_hex_digits_parse() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        let d: Digest = ok.parse().unwrap();
        assert_eq!(d.to_string(), ok);
        assert_eq!(d.hex(), "ab".repeat(32));
        for bad in [
            "sha256:../../etc".to_string(),
            "sha256:".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}/", "ab".repeat(32)),
            format!("sha512:{}", "ab".repeat(32)),
            format!("sha256:{}", "ab".repeat(33)),
            "ab".repeat(32),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} parsed");
        }
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{ok}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:../x\"").is_err());
    }

    #[test]
    fn a_hash_prints_as_lower_hex() {
        let mut h = [0u8; 32];
        h[0] = 0xab;
        h[31] = 0x0f;
        let d = Digest::from_sha256(h);
        assert!(d.as_str().starts_with("sha256:ab00"));
        assert!(d.as_str().ends_with("0f"));
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
    }
}
