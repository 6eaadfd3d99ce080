//! Topic names as broker subjects (NATS) and channels (Redis): the configured prefix, then the
//! name with every byte but ASCII letters, digits, `_` and `-` written as `%XX` (upper-case
//! hex). NATS would otherwise read a `.` as a token separator, `*` and `>` as wildcards and
//! white space as the end of the subject; escaping them all keeps every topic name, whatever
//! it holds, one literal subject, and the same name gives the same subject on every node.
//!
//! Refused (the topic stays on its node, counted): the empty name, and names whose subject
//! would pass [`MAX_SUBJECT_LEN`] bytes (NATS' control line is bounded; a subject that long is
//! not a topic name but a mistake or an attack).

/// The longest subject the bridge makes, in bytes: a topic name of up to 1,024 plain bytes
/// (or a third as many that all need escaping), with the prefix.
pub(crate) const MAX_SUBJECT_LEN: usize = 1024;

/// Makes subjects under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    pub(crate) fn new(prefix: &str) -> Subjects {
        Subjects {
            prefix: prefix.to_owned(),
        }
    }

    /// The subject of `topic`, or `None` when the topic cannot cross (see the module doc).
    pub(crate) fn of(&self, topic: &str) -> Option<String> {
        if topic.is_empty() {
            return None;
        }
        let mut subject = String::with_capacity(self.prefix.len() + topic.len());
        subject.push_str(&self.prefix);
        for &b in topic.as_bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                subject.push(char::from(b));
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                subject.push('%');
                subject.push(char::from(HEX[usize::from(b >> 4)]));
                subject.push(char::from(HEX[usize::from(b & 0xF)]));
            }
            if subject.len() > MAX_SUBJECT_LEN {
                return None;
            }
        }
        Some(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the subject decoded back, byte by byte.
    fn unescape(subject: &str, prefix: &str) -> Vec<u8> {
        let rest = subject
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{subject}"));
        let bytes = rest.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    /// What NATS accepts as one literal subject: no white space, no wildcard tokens, no empty
    /// tokens.
    fn valid_nats_literal(subject: &str) -> bool {
        !subject.is_empty()
            && !subject.bytes().any(|b| b.is_ascii_whitespace() || b == 0)
            && subject
                .split('.')
                .all(|token| !token.is_empty() && token != "*" && token != ">")
    }

    #[test]
    fn every_name_becomes_one_literal_subject_and_back() {
        let subjects = Subjects::new("lanes.");
        let names = [
            "room",
            "room.lobby",
            "a b",
            "*",
            ">",
            "prices.>",
            "..",
            "%41",
            "é✓",
            "tab\there",
            "new\r\nline",
            "UPPER_lower-09",
        ];
        for name in names {
            let subject = subjects.of(name).unwrap();
            assert!(valid_nats_literal(&subject), "{name:?} -> {subject:?}");
            assert_eq!(unescape(&subject, "lanes."), name.as_bytes(), "{name:?}");
        }
        assert_eq!(subjects.of("room.lobby").unwrap(), "lanes.room%2Elobby");
        assert_eq!(
            subjects.of("UPPER_lower-09").unwrap(),
            "lanes.UPPER_lower-09"
        );
    }

    #[test]
    fn distinct_names_get_distinct_subjects() {
        let subjects = Subjects::new("p:");
        let names = ["a.b", "a%2Eb", "a%2eb", "a b", "a+b", "a_b"];
        let made: std::collections::HashSet<String> =
            names.iter().map(|n| subjects.of(n).unwrap()).collect();
        assert_eq!(made.len(), names.len());
    }

    #[test]
    fn empty_and_overlong_names_are_refused() {
        let subjects = Subjects::new("lanes.");
        assert_eq!(subjects.of(""), None);
        let longest = "x".repeat(MAX_SUBJECT_LEN - "lanes.".len());
        assert_eq!(
            subjects.of(&longest).map(|s| s.len()),
            Some(MAX_SUBJECT_LEN)
        );
        assert_eq!(subjects.of(&format!("{longest}x")), None);
        assert_eq!(subjects.of(&".".repeat(400)), None);
    }
}
