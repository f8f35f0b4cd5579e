//! Text on its way to an operator's terminal. Usernames, user agents and device ids come from
//! clients (or from a database written by an older version), and a terminal obeys the control
//! characters in what it prints: `ESC [2J` clears the screen, `ESC ]0;…BEL` retitles the
//! window, 8-bit CSI (U+009B) works like `ESC [` on many terminals, and a newline inside a field
//! forges a line of output. Every command-line printer passes stored text through `printable`
//! (or `printable_json`), so such characters are shown as escapes and never acted on.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters a terminal acts on or hides instead of showing: C0, DEL and C1 controls, the
/// line and paragraph separators, and the bidirectional overrides and isolates that reorder
/// what is shown (the "Trojan Source" characters).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every hidden character escaped the way Rust writes it (`\n`, `\x1b`,
/// `\u{9b}`), and backslashes doubled so that an escape can be told from the same letters
/// typed: what is shown can be read back unambiguously.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| hidden(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => shown.push_str("\\\\"),
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(shown, "\\x{:02x}", u32::from(c));
            }
            c if hidden(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// A line of JSON safe to print: serde_json escapes C0 controls but writes DEL, C1 controls
/// and the other hidden characters as they are. They can stand only inside strings, where
/// `\uXXXX` means the same character, so the value a reader parses is unchanged.
pub fn printable_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(hidden) {
        return Cow::Borrowed(json);
    }
    let mut shown = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if hidden(c) {
            let _ = write!(shown, "\\u{:04x}", u32::from(c));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_plain_text_then_it_is_borrowed_unchanged() {
        assert!(matches!(printable("Émile 😀 bob"), Cow::Borrowed(_)));
        assert!(matches!(printable_json(r#"{"a":"\\"}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn given_controls_then_each_is_shown_as_an_escape() {
        assert_eq!(
            printable("evil\u{1b}[2J\u{1b}]0;owned\u{7}\nroot\r\t\u{7f}"),
            r"evil\x1b[2J\x1b]0;owned\x07\nroot\r\t\x7f"
        );
        assert_eq!(printable("a\u{9b}b\u{85}c\u{9f}"), r"a\u{9b}b\u{85}c\u{9f}");
        assert_eq!(
            printable("\u{202e}gpj.exe\u{2028}"),
            r"\u{202e}gpj.exe\u{2028}"
        );
    }

    #[test]
    fn given_a_typed_escape_then_it_differs_from_the_character() {
        assert_eq!(printable(r"a\nb"), r"a\\nb");
        assert_ne!(printable(r"a\nb"), printable("a\nb"));
    }

    #[test]
    fn given_json_with_c1_controls_then_it_still_parses_to_the_same_value() {
        let value = serde_json::json!({"ua": "x\u{9b}2J\u{85}\u{7f}\u{1b}\u{202e}"});
        let json = serde_json::to_string(&value).unwrap();
        let shown = printable_json(&json);
        assert!(!shown.chars().any(hidden), "{shown}");
        assert!(shown.contains(r"\u009b"), "{shown}");
        let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(parsed, value);
    }
}
