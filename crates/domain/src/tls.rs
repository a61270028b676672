//! TLS beyond loopback: the daemon's certificate is known by its fingerprint, which a client
//! trusts instead of a certificate authority (the generated certificate is self-signed).

use sha2::{Digest, Sha256};

/// Where a home keeps its certificate, key and the certificate's fingerprint.
pub const TLS_DIR: &str = "tls";
pub const FINGERPRINT_FILE: &str = "fingerprint";

/// A certificate's fingerprint: `sha256:` and the hex SHA-256 of its DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A fingerprint as a user may write it: with or without `sha256:`, colons, any case.
pub fn normalize_fingerprint(s: &str) -> String {
    let bare = s
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:");
    let hex: String = bare
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_however_written() {
        let f = fingerprint(b"a certificate");
        assert!(f.starts_with("sha256:") && f.len() == 7 + 64);
        let shouted = f
            .trim_start_matches("sha256:")
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(normalize_fingerprint(&shouted), f);
        assert_eq!(normalize_fingerprint(&f), f);
    }
}
