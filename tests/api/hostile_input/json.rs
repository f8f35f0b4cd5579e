//! Hostile bodies: a valid body's fields, then wrong types, odd keys, raw JSON that no
//! serializer writes (lone surrogates, `NaN`, 10,000 digits, deep nesting), form encodings of
//! the same, and byte-level mutations (flips, invalid UTF-8, cuts).

use rand::Rng;
use rand::rngs::StdRng;

use super::generate::pick;

/// A body as an ordered list of fields, each value raw JSON text (so it may be invalid).
pub type Fields = Vec<(String, Vec<u8>)>;

pub fn string(text: &str) -> Vec<u8> {
    serde_json::to_string(text)
        .expect("a string serializes")
        .into_bytes()
}

const ODD_TEXT: [&str; 22] = [
    "",
    " ",
    "null",
    "true",
    "0",
    "undefined",
    "' OR 1=1 --",
    "\"; DROP TABLE users; --",
    "{\"$ne\":null}",
    "../../etc/passwd",
    "a\u{0}b",
    "\u{0}",
    "\u{202e}evil\u{202d}",
    "\u{200b}\u{feff}",
    "e\u{301}\u{301}\u{301}",
    "😀🏳️‍🌈",
    "日本語のテキスト",
    "\u{ffff}\u{10ffff}",
    "\t\r\n\u{7}\u{1b}[31m",
    "<script>alert(1)</script>",
    "%00%ff",
    "ALICE@EXAMPLE.COM",
];

/// Text no form of validation expects: odd, random Unicode, or long.
pub fn text(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..4 => pick(rng, &ODD_TEXT).to_string(),
        4..7 => {
            let len = rng.random_range(0..40);
            (0..len)
                .map(|_| match rng.random_range(0..4) {
                    0 => char::from(rng.random_range(0x20u8..0x7f)),
                    1 => char::from_u32(rng.random_range(0..0x80)).unwrap_or('?'),
                    2 => char::from_u32(rng.random_range(0x80..0x3000)).unwrap_or('?'),
                    _ => char::from_u32(rng.random_range(0x1_0000..0x11_0000)).unwrap_or('?'),
                })
                .collect()
        }
        7..9 => "x".repeat(pick(rng, &[73, 256, 1000, 5000])),
        _ => "é".repeat(rng.random_range(30..300)),
    }
}

const ODD_NUMBERS: [&str; 16] = [
    "0",
    "-1",
    "1.5",
    "-0",
    "1e308",
    "1e999",
    "-1e999",
    "5e-324",
    "0.1e-99999",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1E+2",
    "-0.0e0",
];

/// Not JSON at all, or JSON that serializers never write.
const RAW: [&str; 20] = [
    "NaN",
    "Infinity",
    "-Infinity",
    "0x10",
    "01",
    "+1",
    ".5",
    "1.",
    "1e",
    "undefined",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\ud800\\u0041\"",
    "\"\\u0000\"",
    "\"\\uZZZZ\"",
    "\"a\\qb\"",
    "\"unterminated",
    "'single'",
    "True",
    "[1,]",
];

/// Raw bytes that are not UTF-8, or are UTF-8 in a way no decoder may accept.
pub const BAD_UTF8: [&[u8]; 8] = [
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\xf8\x88\x80\x80\x80",
];

/// Nesting `levels` deep, closed or not.
pub fn nested(levels: usize, closed: bool, object: bool) -> Vec<u8> {
    let (open, close): (&[u8], &[u8]) = if object {
        (b"{\"a\":", b"}")
    } else {
        (b"[", b"]")
    };
    let mut out = open.repeat(levels);
    out.extend_from_slice(b"1");
    if closed {
        out.extend(close.repeat(levels));
    }
    out
}

/// Any JSON value, or something where a JSON value should be.
pub fn value(rng: &mut StdRng, depth: u32) -> Vec<u8> {
    match rng.random_range(0..20) {
        0 => b"null".to_vec(),
        1 => pick(rng, &[&b"true"[..], b"false"]).to_vec(),
        2 | 3 => pick(rng, &ODD_NUMBERS).as_bytes().to_vec(),
        4 => pick(rng, &RAW).as_bytes().to_vec(),
        5..9 => string(&text(rng)),
        9 => {
            let mut s = string(&text(rng));
            let at = rng.random_range(1..s.len());
            s.splice(at..at, pick(rng, &BAD_UTF8).iter().copied());
            s
        }
        10 | 11 if depth < 3 => {
            let items: Vec<Vec<u8>> = (0..rng.random_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect();
            [b"[".to_vec(), items.join(&b","[..]), b"]".to_vec()].concat()
        }
        12 | 13 if depth < 3 => {
            let mut fields: Fields = Vec::new();
            for _ in 0..rng.random_range(0..4) {
                let key = key(rng);
                fields.push((key, value(rng, depth + 1)));
            }
            object(&fields)
        }
        14 => nested(
            pick(rng, &[64, 127, 128, 129, 1000, 20_000]),
            rng.random_bool(0.8),
            rng.random_bool(0.5),
        ),
        15 => "9".repeat(pick(rng, &[400, 5000, 30_000])).into_bytes(),
        16 => string(&"s".repeat(pick(rng, &[10_000, 60_000]))),
        17 => pick(
            rng,
            &[&b"{\"$ne\":null}"[..], b"{\"$gt\":\"\"}", b"[\"a\",\"b\"]"],
        )
        .to_vec(),
        _ => b"{}".to_vec(),
    }
}

const ODD_KEYS: [&str; 12] = [
    "__proto__",
    "constructor",
    "prototype",
    "$where",
    "admin",
    "role",
    "id",
    "",
    " identifier",
    "IDENTIFIER",
    "password\u{0}",
    "requestRefresh",
];

pub fn key(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 | 1 => pick(rng, &ODD_KEYS).to_string(),
        2 => text(rng),
        _ => pick(
            rng,
            &[
                "identifier",
                "password",
                "refreshToken",
                "deviceId",
                "scope",
                "email",
                "username",
                "currentPassword",
                "passwordConfirmation",
            ],
        )
        .to_string(),
    }
}

pub fn object(fields: &Fields) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(string(k));
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
    out
}

/// Changes to the fields of a valid body: wrong types, missing and extra keys, duplicates.
pub fn mutate_fields(rng: &mut StdRng, fields: &mut Fields) {
    for _ in 0..rng.random_range(0..4) {
        let at = if fields.is_empty() {
            0
        } else {
            rng.random_range(0..fields.len())
        };
        match rng.random_range(0..6) {
            0 | 1 if !fields.is_empty() => fields[at].1 = value(rng, 0),
            2 if !fields.is_empty() => {
                fields.remove(at);
            }
            3 if !fields.is_empty() => {
                let duplicate = (fields[at].0.clone(), value(rng, 0));
                fields.push(duplicate);
            }
            4 if !fields.is_empty() => fields[at].0 = key(rng),
            _ => {
                let extra = (key(rng), value(rng, 0));
                fields.insert(at.min(fields.len()), extra);
            }
        }
    }
}

/// The body around the fields: an object mostly, sometimes not an object or not JSON.
pub fn frame(rng: &mut StdRng, fields: &Fields) -> Vec<u8> {
    let body = object(fields);
    match rng.random_range(0..30) {
        0 => [b"[".to_vec(), body, b"]".to_vec()].concat(),
        1 => string(&String::from_utf8_lossy(&body)),
        2 => pick(rng, &[&b"null"[..], b"42", b"true", b"\"\"", b"[]"]).to_vec(),
        3 => [body.clone(), body].concat(),
        4 => [b"\xef\xbb\xbf".to_vec(), body].concat(),
        5 => [b"/* hi */".to_vec(), body].concat(),
        6 => {
            let mut body = body;
            body.insert(body.len() - 1, b',');
            body
        }
        7 => [
            b" \t\r\n".repeat(rng.random_range(1..2000)),
            body,
            b"\n".to_vec(),
        ]
        .concat(),
        8 => body[..rng.random_range(0..body.len())].to_vec(),
        _ => body,
    }
}

/// Byte-level damage: flips, odd bytes, invalid UTF-8, cuts and repeats.
pub fn mutate_bytes(rng: &mut StdRng, body: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..5) {
        if body.is_empty() {
            body.extend_from_slice(pick(rng, &BAD_UTF8));
            continue;
        }
        let at = rng.random_range(0..body.len());
        match rng.random_range(0..7) {
            0 => body[at] ^= 1 << rng.random_range(0..8),
            1 => body[at] = pick(rng, b"\0\xff\x80\"\\{}[],:\x01\x7f"),
            2 => {
                body.splice(at..at, pick(rng, &BAD_UTF8).iter().copied());
            }
            3 => {
                let end = rng.random_range(at..=body.len().min(at + 16));
                body.drain(at..end);
            }
            4 => {
                let end = rng.random_range(at..=body.len().min(at + 16));
                let copy = body[at..end].to_vec();
                body.splice(at..at, copy);
            }
            5 => body.truncate(at),
            _ => {
                let noise: Vec<u8> = (0..rng.random_range(1..8)).map(|_| rng.random()).collect();
                body.splice(at..at, noise);
            }
        }
    }
}

/// The fields as `application/x-www-form-urlencoded`, damaged now and then.
pub fn form(rng: &mut StdRng, fields: &Fields) -> Vec<u8> {
    let mut pairs: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            // A form has no types: a JSON string travels as its text, anything else as is.
            let value = serde_json::from_slice::<String>(v)
                .unwrap_or_else(|_| String::from_utf8_lossy(v).into_owned());
            serde_urlencoded::to_string([(k.as_str(), value.as_str())]).unwrap_or_default()
        })
        .collect();
    if rng.random_bool(0.4) {
        let junk = pick(
            rng,
            &[
                "%ZZ=1",
                "%",
                "a=%",
                "=",
                "&&&",
                "a=b=c",
                "k[]=v",
                "k[a][b]=v",
                "%00=%00",
                "%FF%FE=%C0%AF",
                "+=+",
                "identifier",
                "password=%ED%A0%80",
            ],
        );
        let at = rng.random_range(0..=pairs.len());
        pairs.insert(at, junk.to_owned());
    }
    pairs.join("&").into_bytes()
}
