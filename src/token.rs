//! Token values, kept out of every log, Event, status, metric and error message.
//!
//! A [`Token`] only reveals its value through [`Token::expose`], which the code calls in exactly
//! one place: building the mirror Secret's data. `Debug` and `Display` redact.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// Largest token accepted from a source Secret, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A bearer token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// Why a supplied value is not a usable token. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    #[error("is empty")]
    Empty,
    #[error("is {length} bytes long, more than the {MAX_TOKEN_BYTES} allowed")]
    TooLong { length: usize },
    #[error(
        "contains whitespace, control or non-ASCII characters, which cannot travel in an HTTP header"
    )]
    InvalidCharacters,
}

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's secure random source failed: {0}")]
pub struct RandomSourceError(String);

impl Token {
    /// Validates bytes read from a Secret.
    pub fn parse(bytes: &[u8]) -> Result<Self, TokenProblem> {
        if bytes.is_empty() {
            return Err(TokenProblem::Empty);
        }
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(TokenProblem::TooLong {
                length: bytes.len(),
            });
        }
        if !bytes.iter().all(|byte| byte.is_ascii_graphic()) {
            return Err(TokenProblem::InvalidCharacters);
        }
        // All bytes are ASCII, so this cannot fail.
        String::from_utf8(bytes.to_vec())
            .map(Self)
            .map_err(|_| TokenProblem::InvalidCharacters)
    }

    /// Issues a new token: `prefix` followed by `length` characters drawn uniformly from
    /// [A-Za-z0-9] with the operating system's secure random source.
    pub fn generate(prefix: &str, length: usize) -> Result<Self, RandomSourceError> {
        let mut value = String::with_capacity(prefix.len() + length);
        value.push_str(prefix);
        let mut buffer = [0u8; 64];
        while value.len() < prefix.len() + length {
            getrandom::fill(&mut buffer).map_err(|error| RandomSourceError(error.to_string()))?;
            for byte in buffer {
                // Rejection sampling keeps the distribution uniform: 248 = 4 * 62.
                if byte < 248 && value.len() < prefix.len() + length {
                    value.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
                }
            }
        }
        Ok(Self(value))
    }

    /// The value itself, for the one place that writes it into a Secret.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (safe to report).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keyed fingerprint (HMAC-SHA256 with a per-Secret random key), recorded in the mirror
    /// Secret's own annotations, next to the values, so the operator can tell later whether a
    /// value was edited. It never leaves that Secret.
    pub fn fingerprint(&self, key: &str) -> String {
        mac(key, self.0.as_bytes())
    }
}

/// HMAC-SHA256 of `message` under `key`, truncated to 128 bits, in hex.
pub fn mac(key: &str, message: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any size");
    mac.update(message);
    let digest = mac.finalize().into_bytes();
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A random key for [`Token::fingerprint`].
pub fn new_fingerprint_key() -> Result<String, RandomSourceError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| RandomSourceError(error.to_string()))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Token 1 and Token 2.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TokenPair {
    pub token1: Token,
    pub token2: Token,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let token = Token::parse(b"sentinel-value-123").expect("valid");
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        let pair = TokenPair {
            token1: token.clone(),
            token2: token,
        };
        assert!(!format!("{pair:?}").contains("sentinel"));
    }

    #[test]
    fn parse_rejects_bad_values_without_echoing_them() {
        let too_long = vec![b'a'; MAX_TOKEN_BYTES + 1];
        let cases: [(&[u8], Result<(), TokenProblem>); 6] = [
            (b"", Err(TokenProblem::Empty)),
            (&too_long, Err(TokenProblem::TooLong { length: 4097 })),
            (b"has space", Err(TokenProblem::InvalidCharacters)),
            (b"line\nbreak", Err(TokenProblem::InvalidCharacters)),
            ("caf\u{e9}".as_bytes(), Err(TokenProblem::InvalidCharacters)),
            (b"sdk-AbC123._~", Ok(())),
        ];
        for (input, want) in cases {
            let got = Token::parse(input).map(|_| ());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
            if let Err(problem) = got {
                assert!(!problem.to_string().contains("has space"));
            }
        }
    }

    #[test]
    fn generated_tokens_have_prefix_length_and_alphabet() {
        for (prefix, length) in [("", 32), ("sdk-", 48), ("p.", 256)] {
            let token = Token::generate(prefix, length).expect("random source works");
            assert_eq!(token.len(), prefix.len() + length);
            assert!(token.expose().starts_with(prefix));
            assert!(
                token.expose()[prefix.len()..]
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric())
            );
        }
        let first = Token::generate("", 48).expect("random");
        let second = Token::generate("", 48).expect("random");
        assert_ne!(first, second);
    }

    #[test]
    fn fingerprints_depend_on_key_and_value() {
        let token = Token::parse(b"abc").expect("valid");
        let other = Token::parse(b"abd").expect("valid");
        assert_eq!(token.fingerprint("k1"), token.fingerprint("k1"));
        assert_ne!(token.fingerprint("k1"), token.fingerprint("k2"));
        assert_ne!(token.fingerprint("k1"), other.fingerprint("k1"));
        assert_eq!(token.fingerprint("k1").len(), 32);
    }
}
