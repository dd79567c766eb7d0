//! Armor normalization: turns any layout OpenSSH's `sshsig_dearmor` accepts (any line width,
//! mixed widths, CRLF, trailing text or blank lines after the footer) into the exact 70-column form
//! the `ssh-key` PEM decoder insists on. It only re-wraps base64; it must never decode, repair or
//! guess at the signature itself.

const HEADER: &str = "-----BEGIN SSH SIGNATURE-----";
const FOOTER: &str = "-----END SSH SIGNATURE-----";
/// The width ssh-keygen writes and `ssh-key`'s PEM decoder expects.
const WIDTH: usize = 70;

/// Why an armored signature could not be normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArmorError {
    /// Not UTF-8 text.
    NotText,
    /// Something other than white space comes before the header, or there is no header.
    MissingHeader,
    /// No footer line after the header.
    MissingFooter,
    /// A character in the body that is neither base64 nor white space.
    BadCharacter(char),
    /// Nothing between header and footer.
    EmptyBody,
}

impl std::fmt::Display for ArmorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArmorError::NotText => f.write_str("signature file is not text"),
            ArmorError::MissingHeader => write!(f, "signature does not start with `{HEADER}`"),
            ArmorError::MissingFooter => write!(f, "no `{FOOTER}` line after the header"),
            ArmorError::BadCharacter(c) => {
                write!(f, "character {c:?} in the base64 body of the signature")
            }
            ArmorError::EmptyBody => f.write_str("empty signature body"),
        }
    }
}

/// Returns the canonical armor (header, body re-wrapped at 70 columns, footer, final LF).
pub fn normalize(input: &[u8]) -> Result<String, ArmorError> {
    let text = std::str::from_utf8(input).map_err(|_| ArmorError::NotText)?;
    // OpenSSH demands the header at the very start; we also allow leading white space, which a
    // copy and paste adds and which cannot change the meaning of the body.
    let rest = text
        .trim_start()
        .strip_prefix(HEADER)
        .ok_or(ArmorError::MissingHeader)?;
    let rest = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))
        .ok_or(ArmorError::MissingHeader)?;
    // Like sshsig_dearmor: the body ends at the first line that starts with the footer; anything
    // after the footer is ignored.
    let end = find_footer(rest).ok_or(ArmorError::MissingFooter)?;
    let body = &rest[..end];
    let mut clean = String::with_capacity(body.len());
    for c in body.chars() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=' {
            clean.push(c);
        } else {
            return Err(ArmorError::BadCharacter(c));
        }
    }
    if clean.is_empty() {
        return Err(ArmorError::EmptyBody);
    }
    let mut out = String::with_capacity(clean.len() + clean.len() / WIDTH + 64);
    out.push_str(HEADER);
    out.push('\n');
    // `clean` is ASCII only, so byte slicing is on char boundaries.
    for chunk in clean.as_bytes().chunks(WIDTH) {
        out.push_str(std::str::from_utf8(chunk).map_err(|_| ArmorError::NotText)?);
        out.push('\n');
    }
    out.push_str(FOOTER);
    out.push('\n');
    Ok(out)
}

fn find_footer(rest: &str) -> Option<usize> {
    if rest.starts_with(FOOTER) {
        return Some(0);
    }
    rest.match_indices(FOOTER)
        .map(|(i, _)| i)
        .find(|&i| rest.as_bytes().get(i.wrapping_sub(1)) == Some(&b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    fn canonical() -> String {
        let mut s = format!("{HEADER}\n");
        for chunk in BODY.as_bytes().chunks(70) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push('\n');
        }
        s.push_str(FOOTER);
        s.push('\n');
        s
    }

    #[test]
    fn layouts_openssh_accepts_all_normalize_to_one_form() {
        let want = canonical();
        let layouts = [
            want.clone(),
            want.trim_end().to_string(),
            format!("{HEADER}\n{BODY}\n{FOOTER}\n"),
            format!(
                "{HEADER}\n{}\n{}\n{FOOTER}\n\n  \n",
                &BODY[..10],
                &BODY[10..]
            ),
            want.replace('\n', "\r\n"),
            format!("{want}trailing text after the footer\n"),
            format!("\n\n{want}"),
            format!("{HEADER}\n{}\n {}\n{FOOTER}", &BODY[..64], &BODY[64..]),
        ];
        for (i, l) in layouts.iter().enumerate() {
            assert_eq!(normalize(l.as_bytes()).as_ref(), Ok(&want), "layout {i}");
        }
    }

    #[test]
    fn refuses_what_is_not_armor() {
        assert_eq!(normalize(b"hello"), Err(ArmorError::MissingHeader));
        assert_eq!(
            normalize(format!("junk\n{}", canonical()).as_bytes()),
            Err(ArmorError::MissingHeader)
        );
        assert_eq!(
            normalize(format!("{HEADER}\n{BODY}\n").as_bytes()),
            Err(ArmorError::MissingFooter)
        );
        assert_eq!(
            normalize(format!("{HEADER}\n{FOOTER}\n").as_bytes()),
            Err(ArmorError::EmptyBody)
        );
        assert_eq!(
            normalize(format!("{HEADER}\nab*c\n{FOOTER}\n").as_bytes()),
            Err(ArmorError::BadCharacter('*'))
        );
        assert_eq!(normalize(&[0xff, 0xfe]), Err(ArmorError::NotText));
    }
}
