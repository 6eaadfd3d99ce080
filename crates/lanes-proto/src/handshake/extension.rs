//! `Sec-WebSocket-Extensions` values, parsed per the grammar of RFC 6455 §9.1:
//!
//! ```text
//! extension-list  = 1#extension
//! extension       = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A quoted value must, once unescaped, be a token (§9.1). Optional white space is allowed
//! around `,`, `;` and `=`, as browsers send it. Empty list elements are ignored (RFC 9110
//! §5.6.1).

use std::borrow::Cow;

use super::token::{is_ows, is_tchar};

/// One offered (or accepted) extension with its parameters, borrowed from the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer<'b> {
    /// The extension's name, such as `permessage-deflate`.
    pub name: &'b str,
    /// Its parameters, in the order given.
    pub params: Vec<ExtensionParam<'b>>,
}

/// One parameter of an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionParam<'b> {
    /// The parameter's name, such as `client_max_window_bits`.
    pub name: &'b str,
    /// Its value, if any; borrowed unless a quoted value had to be unescaped.
    pub value: Option<Cow<'b, str>>,
}

impl ExtensionOffer<'_> {
    /// The first parameter named `name` (compared case-insensitively), if present.
    pub fn param(&self, name: &str) -> Option<&ExtensionParam<'_>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// The grammar was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Parses one `Sec-WebSocket-Extensions` field value and appends its extensions to `out`.
pub(crate) fn parse_extensions<'b>(
    value: &'b [u8],
    out: &mut Vec<ExtensionOffer<'b>>,
) -> Result<(), Malformed> {
    let mut cursor = Cursor {
        bytes: value,
        at: 0,
    };
    loop {
        cursor.skip_ows();
        match cursor.peek() {
            None => return Ok(()),
            Some(b',') => {
                cursor.at += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cursor.token()?;
        let mut params = Vec::new();
        loop {
            cursor.skip_ows();
            match cursor.peek() {
                None | Some(b',') => break,
                Some(b';') => {
                    cursor.at += 1;
                    cursor.skip_ows();
                    params.push(cursor.param()?);
                }
                Some(_) => return Err(Malformed),
            }
        }
        out.push(ExtensionOffer { name, params });
    }
}

struct Cursor<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Cursor<'b> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Result<&'b str, Malformed> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == start {
            return Err(Malformed);
        }
        // tchar is ASCII, so this never fails.
        core::str::from_utf8(&self.bytes[start..self.at]).map_err(|_| Malformed)
    }

    fn param(&mut self) -> Result<ExtensionParam<'b>, Malformed> {
        let name = self.token()?;
        let save = self.at;
        self.skip_ows();
        if self.peek() != Some(b'=') {
            self.at = save;
            return Ok(ExtensionParam { name, value: None });
        }
        self.at += 1;
        self.skip_ows();
        let value = if self.peek() == Some(b'"') {
            self.quoted_token()?
        } else {
            Cow::Borrowed(self.token()?)
        };
        Ok(ExtensionParam {
            name,
            value: Some(value),
        })
    }

    /// A quoted-string whose unescaped content must be a token.
    fn quoted_token(&mut self) -> Result<Cow<'b, str>, Malformed> {
        self.at += 1; // opening quote
        let start = self.at;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(Malformed),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.at += 2;
                }
                Some(_) => self.at += 1,
            }
        }
        let end = self.at.min(self.bytes.len());
        self.at += 1; // closing quote
        let raw = &self.bytes[start..end];
        let value: Cow<'b, [u8]> = if escaped {
            let mut unescaped = Vec::with_capacity(raw.len());
            let mut iter = raw.iter();
            while let Some(&b) = iter.next() {
                if b == b'\\' {
                    unescaped.push(*iter.next().ok_or(Malformed)?);
                } else {
                    unescaped.push(b);
                }
            }
            Cow::Owned(unescaped)
        } else {
            Cow::Borrowed(raw)
        };
        if value.is_empty() || !value.iter().all(|&b| is_tchar(b)) {
            return Err(Malformed);
        }
        match value {
            Cow::Borrowed(bytes) => core::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| Malformed),
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|_| Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Vec<ExtensionOffer<'_>>, Malformed> {
        let mut out = Vec::new();
        parse_extensions(value.as_bytes(), &mut out).map(|()| out)
    }

    fn param<'a>(name: &'a str, value: Option<&'a str>) -> ExtensionParam<'a> {
        ExtensionParam {
            name,
            value: value.map(Cow::Borrowed),
        }
    }

    #[test]
    fn browser_offer() {
        let offers = parse("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            offers,
            vec![ExtensionOffer {
                name: "permessage-deflate",
                params: vec![param("client_max_window_bits", None)]
            }]
        );
    }

    #[test]
    fn several_offers_with_values_in_order() {
        // RFC 7692 §5.1's example of two offers, plus a quoted value.
        let offers = parse(
            "permessage-deflate; client_max_window_bits=10, permessage-deflate ;server_max_window_bits=\"12\" , x-foo",
        )
        .unwrap();
        assert_eq!(offers.len(), 3);
        assert_eq!(
            offers[0].params,
            vec![param("client_max_window_bits", Some("10"))]
        );
        assert_eq!(
            offers[1].params,
            vec![param("server_max_window_bits", Some("12"))]
        );
        assert_eq!(offers[2].name, "x-foo");
        assert!(offers[2].params.is_empty());
        assert_eq!(
            offers[1]
                .param("SERVER_MAX_WINDOW_BITS")
                .and_then(|p| p.value.as_deref()),
            Some("12")
        );
    }

    #[test]
    fn escaped_quoted_value_is_unescaped() {
        let offers = parse("x; p=\"a\\bc\"").unwrap();
        assert_eq!(offers[0].params[0].value.as_deref(), Some("abc"));
        assert!(matches!(offers[0].params[0].value, Some(Cow::Owned(_))));
    }

    #[test]
    fn empty_elements_are_ignored() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse(" , ,x,").unwrap().len(), 1);
    }

    #[test]
    fn malformed() {
        for bad in [
            "x;",           // parameter missing
            "x; =1",        // parameter name missing
            "x; p=",        // value missing
            "x; p=\"\"",    // empty quoted value is not a token
            "x; p=\"a b\"", // unescaped value is not a token
            "x; p=\"abc",   // unterminated quote
            "x; p=\"ab\\",  // dangling escape
            "x y",          // two tokens
            "x; p=1 2",
            "\"x\"", // quoted extension name
            "x; p=a;",
            "é",
        ] {
            assert_eq!(parse(bad), Err(Malformed), "{bad}");
        }
    }
}
