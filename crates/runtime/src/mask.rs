//! Masking secrets in a job's output: every occurrence of a secret becomes `***` before the
//! output reaches the job's log.
//!
//! Output comes in pieces (one `write` of the job, one frame of a container's log), and a secret
//! may be cut between two of them. So the bytes at the end of a piece that could be the start of
//! a secret are kept back until the next piece (or the end of the output) says whether they are;
//! everything else goes on at once, so a job whose output looks nothing like its secrets shows
//! every line as soon as it is written.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// What replaces a secret.
pub const MASK: &[u8] = b"***";

/// The secrets of one attempt, ready to be found in its output.
pub struct Masker {
    finder: AhoCorasick,
    patterns: Vec<Vec<u8>>,
    /// The longest pattern's length.
    longest: usize,
    /// Which bytes begin a pattern.
    first: [bool; 256],
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Masker {
    /// A masker for these byte strings (empty ones and repeats are dropped); `None` when there is
    /// nothing to mask, so that such a job pays nothing.
    pub fn new(patterns: &[Vec<u8>]) -> Option<Masker> {
        let mut patterns: Vec<Vec<u8>> =
            patterns.iter().filter(|p| !p.is_empty()).cloned().collect();
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return None;
        }
        // Leftmost-longest: of two secrets where one begins the other, the longer is masked whole.
        let finder = match AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
        {
            Ok(f) => f,
            Err(e) => {
                // Only a pattern set beyond the library's size limits gets here.
                tracing::error!(error = %e, "the secrets to mask cannot be searched for");
                return None;
            }
        };
        let mut first = [false; 256];
        for p in &patterns {
            first[usize::from(p[0])] = true;
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        Some(Masker {
            finder,
            patterns,
            longest,
            first,
        })
    }

    /// The longest secret: at most this many bytes minus one are ever kept back.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Masks the front of `buf` (bytes kept back before, then new ones) into `out`, and returns
    /// how many bytes of `buf` that settled; the rest must come again, in front of the next
    /// bytes. With `end` (no more output will come) everything is settled.
    ///
    /// Appends at most three times `buf.len()` bytes to `out` and allocates nothing beyond that,
    /// so a caller with room reserved in `out` allocates nothing at all.
    pub fn mask(&self, buf: &[u8], end: bool, out: &mut Vec<u8>) -> usize {
        // Where an unfinished secret may begin: every match that starts before it is complete
        // in `buf`, and no longer one can start there later.
        let cut = if end { buf.len() } else { self.unfinished(buf) };
        let mut at = 0;
        for m in self.finder.find_iter(buf) {
            if m.start() >= cut {
                break;
            }
            out.extend_from_slice(&buf[at..m.start()]);
            out.extend_from_slice(MASK);
            at = m.end();
        }
        let settled = at.max(cut);
        out.extend_from_slice(&buf[at..settled]);
        settled
    }

    /// The first position from which the rest of `buf` is the beginning (a proper prefix) of a
    /// secret, or `buf.len()`.
    fn unfinished(&self, buf: &[u8]) -> usize {
        let from = buf.len().saturating_sub(self.longest.saturating_sub(1));
        (from..buf.len())
            .find(|&i| {
                let rest = &buf[i..];
                self.first[usize::from(rest[0])]
                    && self
                        .patterns
                        .iter()
                        .any(|p| p.len() > rest.len() && p.starts_with(rest))
            })
            .unwrap_or(buf.len())
    }
}

/// Masks a stream of pieces: keeps what a piece leaves unsettled for the next.
#[derive(Debug)]
pub struct MaskStream {
    masker: std::sync::Arc<Masker>,
    kept: Vec<u8>,
}

impl MaskStream {
    pub fn new(masker: std::sync::Arc<Masker>) -> MaskStream {
        MaskStream {
            masker,
            kept: Vec::new(),
        }
    }

    /// Masks `piece` after what was kept back into `out`.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        self.kept.extend_from_slice(piece);
        let settled = self.masker.mask(&self.kept, false, out);
        self.kept.drain(..settled);
    }

    /// The output ended: what was kept back goes too.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.masker.mask(&self.kept, true, out);
        self.kept.clear();
    }

    /// Whether every byte pushed so far is in `out` (nothing is kept back).
    pub fn is_settled(&self) -> bool {
        self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> std::sync::Arc<Masker> {
        let patterns: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        std::sync::Arc::new(Masker::new(&patterns).unwrap())
    }

    /// Masks `pieces` one by one, as they would arrive.
    fn stream(secrets: &[&str], pieces: &[&str]) -> String {
        let mut s = MaskStream::new(masker(secrets));
        let mut out = Vec::new();
        for p in pieces {
            s.push(p.as_bytes(), &mut out);
        }
        s.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_secret_is_masked_wherever_the_output_is_cut() {
        let text = "token=hf_abc123 and again hf_abc123!";
        let expected = "token=*** and again ***!";
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let pieces = [&text[..i], &text[i..j], &text[j..]];
                assert_eq!(stream(&["hf_abc123"], &pieces), expected, "cut at {i}, {j}");
            }
        }
        // One byte at a time.
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(stream(&["hf_abc123"], &pieces), expected);
    }

    #[test]
    fn output_unlike_a_secret_is_never_kept_back() {
        let m = masker(&["hf_abc123"]);
        let mut out = Vec::new();
        let line = b"epoch 1: loss 0.25\n";
        assert_eq!(m.mask(line, false, &mut out), line.len());
        assert_eq!(out, line);
        // The start of a secret is kept back, and only that.
        out.clear();
        let settled = m.mask(b"loading hf_ab", false, &mut out);
        assert_eq!(&out[..], b"loading ");
        assert_eq!(settled, 8);
    }

    #[test]
    fn the_longer_of_two_overlapping_secrets_wins_and_repeats_are_one() {
        assert_eq!(
            stream(&["abcd", "abcdefgh", "abcd"], &["xx abcdefgh yy abcd zz"]),
            "xx *** yy *** zz"
        );
        // The shorter is masked when the longer does not follow, even across pieces.
        assert_eq!(stream(&["abcd", "abcdefgh"], &["abcd", "efg"]), "***efg");
        assert_eq!(stream(&["abcd", "abcdefgh"], &["abcd", "efgh!"]), "***!");
    }

    #[test]
    fn an_unfinished_secret_at_the_end_is_printed_as_it_was() {
        assert_eq!(stream(&["secret"], &["the secr"]), "the secr");
        assert_eq!(stream(&["aaab"], &["aaaaaa", "ab"]), "aaaa***");
    }

    #[test]
    fn nothing_to_mask_makes_no_masker() {
        assert!(Masker::new(&[]).is_none());
        assert!(Masker::new(&[Vec::new()]).is_none());
    }

    #[test]
    fn binary_output_and_secrets_are_bytes() {
        let m = Masker::new(&[vec![0, 0xff]]).unwrap();
        let mut out = Vec::new();
        m.mask(&[1, 0, 0xff, 2], true, &mut out);
        assert_eq!(out, [1, b'*', b'*', b'*', 2]);
    }
}
