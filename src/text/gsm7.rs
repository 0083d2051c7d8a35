//! The GSM 03.38 (3GPP TS 23.038) default alphabet and its extension table, as
//! SMPP carries it with data_coding 0: unpacked, one septet per octet.

/// The default alphabet, indexed by septet. 0x1B is the escape to the extension table.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

const ESC: u8 = 0x1B;

/// The extension table: the septet after ESC and the character it stands for.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Decodes unpacked septets. None if an octet has its high bit set (not GSM 7-bit).
/// An escape to an undefined code shows the base character, and a trailing or
/// doubled escape a space, as 23.038 asks of receivers.
pub fn decode(septets: &[u8]) -> Option<String> {
    let mut text = String::with_capacity(septets.len());
    let mut octets = septets.iter().copied().peekable();
    while let Some(octet) = octets.next() {
        if octet > 0x7F {
            return None;
        }
        if octet != ESC {
            text.push(BASIC[octet as usize]);
            continue;
        }
        match octets.next() {
            None | Some(ESC) => text.push(' '),
            Some(code) if code > 0x7F => return None,
            Some(code) => text.push(
                EXTENSION
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map_or(BASIC[code as usize], |(_, ch)| *ch),
            ),
        }
    }
    Some(text)
}

/// The septets of one character: one, or two for the extension table. None if
/// the character has no GSM 7-bit form.
pub fn encode_char(ch: char) -> Option<([u8; 2], usize)> {
    if ch != '\u{1B}' {
        if let Some(pos) = BASIC.iter().position(|&c| c == ch) {
            return Some(([pos as u8, 0], 1));
        }
    }
    EXTENSION
        .iter()
        .find(|(_, c)| *c == ch)
        .map(|(code, _)| ([ESC, *code], 2))
}

/// Encodes text as unpacked septets, or None if some character is not in GSM 03.38.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for ch in text.chars() {
        let (septets, len) = encode_char(ch)?;
        out.extend_from_slice(&septets[..len]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checklist_vector() {
        // Confirmed with Perl's Encode::GSM0338 (see also the oracle test below).
        let text = "@£$_€{}[]~|^\\§";
        let expected = [
            0x00, 0x01, 0x02, 0x11, 0x1B, 0x65, 0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x3C, 0x1B, 0x3E,
            0x1B, 0x3D, 0x1B, 0x40, 0x1B, 0x14, 0x1B, 0x2F, 0x5F,
        ];
        assert_eq!(encode(text).unwrap(), expected);
        assert_eq!(decode(&expected).unwrap(), text);
    }

    #[test]
    fn where_gsm_differs_from_ascii() {
        assert_eq!(decode(&[0x24, 0x40, 0x5F, 0x60]).unwrap(), "¤¡§¿");
        assert_eq!(encode("`"), None, "backtick has no GSM form");
        assert_eq!(encode("Hello"), Some(b"Hello".to_vec()));
    }

    #[test]
    fn escapes_are_read_leniently_and_high_octets_rejected() {
        assert_eq!(
            decode(&[0x1B, 0x41]).unwrap(),
            "A",
            "undefined escape shows the base character"
        );
        assert_eq!(
            decode(&[0x41, 0x1B]).unwrap(),
            "A ",
            "a trailing escape is a space"
        );
        assert_eq!(decode(&[0x1B, 0x1B]).unwrap(), " ");
        assert_eq!(decode(&[0x41, 0x80]), None);
        assert_eq!(decode(&[0x1B, 0xE5]), None);
    }

    #[test]
    fn every_character_round_trips() {
        for (septet, &ch) in BASIC.iter().enumerate() {
            if septet as u8 == ESC {
                continue;
            }
            assert_eq!(
                decode(&encode(&ch.to_string()).unwrap()).unwrap(),
                ch.to_string()
            );
        }
        for (_, ch) in EXTENSION {
            assert_eq!(encode(&ch.to_string()).unwrap().len(), 2);
        }
    }

    /// Perl's core Encode::GSM0338 is an independent table: every character of ours
    /// must encode to the same octets there.
    #[test]
    fn agrees_with_perl_encode_gsm0338() {
        let chars: String = BASIC
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u8 != ESC)
            .map(|(_, c)| *c)
            .chain(EXTENSION.iter().map(|(_, c)| *c))
            .collect();
        let hex_input: String = chars
            .chars()
            .map(|c| format!("\\x{{{:X}}}", c as u32))
            .collect();
        let script = format!(
            "use Encode; binmode STDOUT; print unpack('H*', encode('gsm0338', \"{hex_input}\"))"
        );
        let out = std::process::Command::new("perl")
            .args(["-e", &script])
            .output()
            .expect("perl runs (Debian's perl-base has Encode::GSM0338)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let perl_hex = String::from_utf8(out.stdout).unwrap();
        let ours: String = encode(&chars)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ours, perl_hex);
    }
}
