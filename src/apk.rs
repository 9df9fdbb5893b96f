//! Reads an Android package's identity (package name, versionCode, versionName) from the
//! bytes of an APK so the engine can skip uploading a version Esper already has. It owns
//! the ZIP lookup of `AndroidManifest.xml`, a small bounds-checked parser for Android's
//! binary XML (AXML) that only looks at the `<manifest>` element, and the mock server's
//! text "APK" (`key=value` lines). It does no I/O and resolves no resources: a versionName
//! that points into `resources.arsc` comes back as `None`, and deciding what to do with the
//! identity (compare, skip, upload) is left to the caller.

use std::io::{Cursor, Read};

/// The identity of an Android package, as declared by its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApkInfo {
    /// The application id, e.g. `com.acme.kiosk`.
    pub package: String,
    /// `versionCode` in decimal, e.g. `420`.
    pub version_code: String,
    /// `versionName`, when it is a literal string (not a resource reference).
    pub version_name: Option<String>,
}

/// Why a file's identity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApkError {
    /// The file starts like a ZIP archive but the archive cannot be read.
    #[error("not a readable ZIP archive ({0}); check the APK file is complete and not corrupted")]
    Zip(String),
    /// The archive has no `AndroidManifest.xml` entry.
    #[error(
        "not an APK: no AndroidManifest.xml in the archive; check the file is an .apk, not an .aab or another ZIP"
    )]
    NoManifest,
    /// The manifest entry decompresses to more than [`MAX_MANIFEST_BYTES`].
    #[error(
        "the APK's AndroidManifest.xml is larger than {limit} bytes, which no real manifest is; check the file is a genuine APK"
    )]
    ManifestTooLarge { limit: u64 },
    /// The binary XML of the manifest is malformed.
    #[error(
        "malformed AndroidManifest.xml: {0}; rebuild the APK or check the file is not corrupted"
    )]
    Axml(String),
    /// The binary XML has no `<manifest>` start element.
    #[error(
        "the APK's AndroidManifest.xml has no <manifest> element; rebuild the APK or check the file is not corrupted"
    )]
    NoManifestElement,
    /// A required attribute is absent from `<manifest>`.
    #[error(
        "the APK's <manifest> has no {0} attribute; set it in the app's build (e.g. applicationId / versionCode in build.gradle) and rebuild"
    )]
    MissingAttribute(&'static str),
    /// The package name is not a valid Android application id.
    #[error(
        "invalid package name {0:?}: expected dot-separated identifiers such as com.acme.kiosk"
    )]
    InvalidPackage(String),
    /// The version code is not a non-negative whole number.
    #[error("invalid version code {0:?}: expected a non-negative whole number such as 420")]
    InvalidVersionCode(String),
    /// Neither a ZIP archive nor UTF-8 text.
    #[error(
        "not an APK: the file is neither a ZIP archive nor a mock text APK (UTF-8 key=value lines); check the file path"
    )]
    NotApk,
    /// A line of a mock text APK is not `key=value`.
    #[error(
        "not a mock APK: unexpected line {0:?}; use key=value lines such as package=com.acme.kiosk"
    )]
    MockLine(String),
    /// A required key of a mock text APK is absent.
    #[error("mock APK has no {key} line; add one such as {example}")]
    MockMissing {
        key: &'static str,
        example: &'static str,
    },
}

/// The most bytes `AndroidManifest.xml` may decompress to (real ones are well under 1 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Reads package, versionCode and versionName.
///
/// Bytes starting with the ZIP signature are read as a real APK; anything else as the mock
/// server's text APK.
pub fn read(bytes: &[u8]) -> Result<ApkInfo, ApkError> {
    let info = if bytes.starts_with(ZIP_MAGIC) {
        let manifest = manifest_bytes(bytes)?;
        parse_manifest(&manifest)?
    } else {
        parse_mock(bytes)?
    };
    if !valid_package(&info.package) {
        return Err(ApkError::InvalidPackage(info.package));
    }
    Ok(info)
}

/// Extracts `AndroidManifest.xml` from the archive, refusing more than `MAX_MANIFEST_BYTES`.
fn manifest_bytes(bytes: &[u8]) -> Result<Vec<u8>, ApkError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| ApkError::Zip(e.to_string()))?;
    let entry = match archive.by_name("AndroidManifest.xml") {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Err(ApkError::NoManifest),
        Err(e) => return Err(ApkError::Zip(e.to_string())),
    };
    let mut out = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApkError::Zip(e.to_string()))?;
    if out.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ApkError::ManifestTooLarge {
            limit: MAX_MANIFEST_BYTES,
        });
    }
    Ok(out)
}

/// An Android application id: two or more segments of `[A-Za-z][A-Za-z0-9_]*`.
fn valid_package(p: &str) -> bool {
    let mut segments = 0;
    for s in p.split('.') {
        segments += 1;
        let ok = s.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !ok {
            return false;
        }
    }
    segments >= 2
}

/// Normalises a textual version code (decimal, or `0x` hex as aapt accepts) to decimal.
fn version_code_from_str(s: &str) -> Result<String, ApkError> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t.parse::<u64>().ok(),
        None => None,
    };
    parsed
        .map(|n| n.to_string())
        .ok_or_else(|| ApkError::InvalidVersionCode(s.to_string()))
}

// ---------------------------------------------------------------------------------------
// Mock text APK
// ---------------------------------------------------------------------------------------

fn parse_mock(bytes: &[u8]) -> Result<ApkInfo, ApkError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApkError::NotApk)?;
    let (mut package, mut code, mut name) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            let shown: String = line.chars().take(80).collect();
            return Err(ApkError::MockLine(shown));
        };
        let v = v.trim();
        match k.trim() {
            "package" => package = Some(v),
            "version_code" => code = Some(v),
            "version_name" => name = Some(v),
            _ => {}
        }
    }
    let package = package
        .filter(|p| !p.is_empty())
        .ok_or(ApkError::MockMissing {
            key: "package=",
            example: "package=com.acme.kiosk",
        })?;
    let code = code
        .filter(|c| !c.is_empty())
        .ok_or(ApkError::MockMissing {
            key: "version_code=",
            example: "version_code=420",
        })?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || code.len() > 50 {
        return Err(ApkError::InvalidVersionCode(code.to_string()));
    }
    Ok(ApkInfo {
        package: package.to_string(),
        version_code: code.to_string(),
        version_name: name.filter(|n| !n.is_empty()).map(str::to_string),
    })
}

// ---------------------------------------------------------------------------------------
// Android binary XML (AXML)
// ---------------------------------------------------------------------------------------

const RES_STRING_POOL_TYPE: u16 = 0x0001;
const RES_XML_TYPE: u16 = 0x0003;
const RES_XML_START_ELEMENT_TYPE: u16 = 0x0102;
const RES_XML_RESOURCE_MAP_TYPE: u16 = 0x0180;

const UTF8_FLAG: u32 = 0x100;
const NO_ENTRY: u32 = 0xFFFF_FFFF;

const TYPE_REFERENCE: u8 = 0x01;
const TYPE_ATTRIBUTE: u8 = 0x02;
const TYPE_STRING: u8 = 0x03;
const TYPE_DYNAMIC_REFERENCE: u8 = 0x07;
const TYPE_INT_DEC: u8 = 0x10;
const TYPE_INT_HEX: u8 = 0x11;

const ATTR_VERSION_CODE: u32 = 0x0101_021b;
const ATTR_VERSION_NAME: u32 = 0x0101_021c;

fn axml(msg: impl Into<String>) -> ApkError {
    ApkError::Axml(msg.into())
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A chunk: its type, header length and the whole chunk's bytes (header included).
struct Chunk<'a> {
    kind: u16,
    header_size: usize,
    data: &'a [u8],
}

/// Reads the chunk header at `off` and checks it fits in `buf`.
fn chunk_at(buf: &[u8], off: usize) -> Result<Chunk<'_>, ApkError> {
    let (Some(kind), Some(header_size), Some(size)) =
        (u16_at(buf, off), u16_at(buf, off + 2), u32_at(buf, off + 4))
    else {
        return Err(axml(format!("truncated chunk header at offset {off}")));
    };
    let (header_size, size) = (usize::from(header_size), size as usize);
    if header_size < 8 || size < header_size {
        return Err(axml(format!(
            "chunk at offset {off} has impossible sizes (header {header_size}, total {size})"
        )));
    }
    let data = off
        .checked_add(size)
        .and_then(|end| buf.get(off..end))
        .ok_or_else(|| {
            axml(format!(
                "chunk at offset {off} runs past the end of the file"
            ))
        })?;
    Ok(Chunk {
        kind,
        header_size,
        data,
    })
}

/// A string pool, decoded lazily by index; every access is bounds-checked against the chunk.
struct StringPool<'a> {
    chunk: &'a [u8],
    count: usize,
    offsets_at: usize,
    strings_at: usize,
    utf8: bool,
}

impl<'a> StringPool<'a> {
    fn parse(c: &Chunk<'a>) -> Result<Self, ApkError> {
        let b = c.data;
        if c.header_size < 28 {
            return Err(axml("string pool header is too short"));
        }
        let (Some(count), Some(flags), Some(strings_at)) =
            (u32_at(b, 8), u32_at(b, 16), u32_at(b, 20))
        else {
            return Err(axml("string pool header is truncated"));
        };
        let count = count as usize;
        let offsets_at = c.header_size;
        // The offset table must fit in the chunk: this caps `count` by the input size.
        let table_end = count
            .checked_mul(4)
            .and_then(|n| n.checked_add(offsets_at))
            .filter(|&end| end <= b.len())
            .ok_or_else(|| axml(format!("string pool claims {count} strings, more than fit")))?;
        let strings_at = strings_at as usize;
        if count > 0 && (strings_at < table_end || strings_at > b.len()) {
            return Err(axml("string pool's string data lies outside the chunk"));
        }
        Ok(StringPool {
            chunk: b,
            count,
            offsets_at,
            strings_at,
            utf8: flags & UTF8_FLAG != 0,
        })
    }

    /// The string at `idx`; `None` for `NO_ENTRY`, an out-of-range index or bad data.
    fn get(&self, idx: u32) -> Option<String> {
        let idx = idx as usize;
        if idx >= self.count {
            return None;
        }
        let rel = u32_at(self.chunk, self.offsets_at + idx * 4)? as usize;
        let at = self.strings_at.checked_add(rel)?;
        if self.utf8 {
            self.utf8_at(at)
        } else {
            self.utf16_at(at)
        }
    }

    /// UTF-8 pool entry: char count (1 or 2 bytes), byte count (1 or 2 bytes), bytes, NUL.
    fn utf8_at(&self, at: usize) -> Option<String> {
        let b = self.chunk;
        let len8 = |p: usize| -> Option<(usize, usize)> {
            let first = *b.get(p)?;
            if first & 0x80 != 0 {
                let second = *b.get(p + 1)?;
                Some(((usize::from(first & 0x7F) << 8) | usize::from(second), 2))
            } else {
                Some((usize::from(first), 1))
            }
        };
        let (_chars, n1) = len8(at)?;
        let (bytes, n2) = len8(at + n1)?;
        let start = at + n1 + n2;
        let s = b.get(start..start.checked_add(bytes)?)?;
        Some(String::from_utf8_lossy(s).into_owned())
    }

    /// UTF-16 pool entry: unit count (1 or 2 u16s), units, NUL.
    fn utf16_at(&self, at: usize) -> Option<String> {
        let b = self.chunk;
        let first = usize::from(u16_at(b, at)?);
        let (units, skip) = if first & 0x8000 != 0 {
            let second = usize::from(u16_at(b, at + 2)?);
            (((first & 0x7FFF) << 16) | second, 4)
        } else {
            (first, 2)
        };
        let start = at + skip;
        let raw = b.get(start..start.checked_add(units.checked_mul(2)?)?)?;
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect();
        Some(String::from_utf16_lossy(&units))
    }
}

/// A typed attribute value, as far as this module cares.
enum Value {
    Str(String),
    Int(u32),
    Unresolved,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Package,
    VersionCode,
    VersionName,
    Other,
}

/// Parses a binary `AndroidManifest.xml` and reads the identity off its `<manifest>` element.
fn parse_manifest(buf: &[u8]) -> Result<ApkInfo, ApkError> {
    let root = chunk_at(buf, 0)?;
    if root.kind != RES_XML_TYPE {
        return Err(axml(format!(
            "expected a binary XML header (type 0x0003), found type {:#06x}",
            root.kind
        )));
    }
    let doc = root.data;
    let mut off = root.header_size;
    let mut pool: Option<StringPool<'_>> = None;
    let mut res_map: &[u8] = &[];
    // Every iteration advances `off` by at least 8 bytes (chunk_at guarantees size >= 8).
    while off < doc.len() {
        let c = chunk_at(doc, off)?;
        off += c.data.len();
        match c.kind {
            RES_STRING_POOL_TYPE if pool.is_none() => pool = Some(StringPool::parse(&c)?),
            RES_XML_RESOURCE_MAP_TYPE => res_map = &c.data[c.header_size..],
            RES_XML_START_ELEMENT_TYPE => {
                let pool = pool
                    .as_ref()
                    .ok_or_else(|| axml("an element comes before the string pool"))?;
                if let Some(info) = manifest_element(&c, pool, res_map)? {
                    return Ok(info);
                }
            }
            _ => {}
        }
    }
    Err(ApkError::NoManifestElement)
}

/// Reads a start element; `None` when it is not `<manifest>`.
fn manifest_element(
    c: &Chunk<'_>,
    pool: &StringPool<'_>,
    res_map: &[u8],
) -> Result<Option<ApkInfo>, ApkError> {
    // ResXMLTree_node header (16 bytes), then ResXMLTree_attrExt (20 bytes).
    if c.header_size < 16 {
        return Err(axml("element header is too short"));
    }
    let ext = c.header_size;
    let (Some(name), Some(attr_start), Some(attr_size), Some(attr_count)) = (
        u32_at(c.data, ext + 4),
        u16_at(c.data, ext + 8),
        u16_at(c.data, ext + 10),
        u16_at(c.data, ext + 12),
    ) else {
        return Err(axml("element is truncated"));
    };
    if pool.get(name).as_deref() != Some("manifest") {
        return Ok(None);
    }
    let (attr_start, attr_size) = (usize::from(attr_start), usize::from(attr_size));
    if attr_size < 20 {
        return Err(axml(format!(
            "attribute size {attr_size} is below 20 bytes"
        )));
    }
    let (mut package, mut code, mut version_name) = (None, None, None);
    for i in 0..usize::from(attr_count) {
        let at = ext + attr_start + i * attr_size;
        let (Some(name), Some(raw), Some(ty), Some(data)) = (
            u32_at(c.data, at + 4),
            u32_at(c.data, at + 8),
            c.data.get(at + 15).copied(),
            u32_at(c.data, at + 16),
        ) else {
            return Err(axml(format!("attribute {i} of <manifest> is truncated")));
        };
        let value = || match ty {
            TYPE_STRING => pool.get(data).map_or(Value::Unresolved, Value::Str),
            TYPE_INT_DEC | TYPE_INT_HEX => Value::Int(data),
            TYPE_REFERENCE | TYPE_ATTRIBUTE | TYPE_DYNAMIC_REFERENCE => Value::Unresolved,
            _ if raw != NO_ENTRY => pool.get(raw).map_or(Value::Unresolved, Value::Str),
            _ => Value::Unresolved,
        };
        match which(name, pool, res_map) {
            Which::Package => package = Some(value()),
            Which::VersionCode => code = Some(value()),
            Which::VersionName => version_name = Some(value()),
            Which::Other => {}
        }
    }
    let package = match package {
        Some(Value::Str(s)) => s,
        Some(Value::Int(n)) => return Err(ApkError::InvalidPackage(n.to_string())),
        Some(Value::Unresolved) | None => return Err(ApkError::MissingAttribute("package")),
    };
    let version_code = match code {
        Some(Value::Int(n)) => n.to_string(),
        Some(Value::Str(s)) => version_code_from_str(&s)?,
        Some(Value::Unresolved) | None => {
            return Err(ApkError::MissingAttribute("android:versionCode"));
        }
    };
    let version_name = match version_name {
        Some(Value::Str(s)) => Some(s),
        Some(Value::Int(n)) => Some(n.to_string()),
        Some(Value::Unresolved) | None => None,
    };
    Ok(Some(ApkInfo {
        package,
        version_code,
        version_name,
    }))
}

/// Identifies an attribute by its resource id when it has one, else by its name.
fn which(name: u32, pool: &StringPool<'_>, res_map: &[u8]) -> Which {
    let id = usize::try_from(name)
        .ok()
        .and_then(|i| i.checked_mul(4))
        .and_then(|o| u32_at(res_map, o))
        .unwrap_or(0);
    match id {
        ATTR_VERSION_CODE => Which::VersionCode,
        ATTR_VERSION_NAME => Which::VersionName,
        0 => match pool.get(name).as_deref() {
            Some("package") => Which::Package,
            Some("versionCode") => Which::VersionCode,
            Some("versionName") => Which::VersionName,
            _ => Which::Other,
        },
        _ => Which::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ANDROID_NS: &str = "http://schemas.android.com/apk/res/android";

    /// One `<manifest>` attribute for the builder.
    struct Attr {
        ns: u32,
        name: u32,
        raw: u32,
        ty: u8,
        data: u32,
    }

    fn push16(v: &mut Vec<u8>, x: u16) {
        v.extend_from_slice(&x.to_le_bytes());
    }

    fn push32(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_le_bytes());
    }

    fn chunk(kind: u16, header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push16(&mut v, kind);
        push16(&mut v, (8 + header.len()) as u16);
        push32(&mut v, (8 + header.len() + body.len()) as u32);
        v.extend_from_slice(header);
        v.extend_from_slice(body);
        v
    }

    fn string_pool(strings: &[&str], utf8: bool) -> Vec<u8> {
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        for s in strings {
            push32(&mut offsets, data.len() as u32);
            if utf8 {
                for n in [s.chars().count(), s.len()] {
                    if n > 0x7F {
                        data.push(0x80 | (n >> 8) as u8);
                        data.push(n as u8);
                    } else {
                        data.push(n as u8);
                    }
                }
                data.extend_from_slice(s.as_bytes());
                data.push(0);
            } else {
                let units: Vec<u16> = s.encode_utf16().collect();
                let n = units.len();
                if n > 0x7FFF {
                    push16(&mut data, 0x8000 | (n >> 16) as u16);
                    push16(&mut data, n as u16);
                } else {
                    push16(&mut data, n as u16);
                }
                for u in units {
                    push16(&mut data, u);
                }
                push16(&mut data, 0);
            }
        }
        while data.len() % 4 != 0 {
            data.push(0);
        }
        let mut header = Vec::new();
        push32(&mut header, strings.len() as u32);
        push32(&mut header, 0); // styleCount
        push32(&mut header, if utf8 { UTF8_FLAG } else { 0 });
        push32(&mut header, (28 + offsets.len()) as u32); // stringsStart
        push32(&mut header, 0); // stylesStart
        let mut body = offsets;
        body.extend_from_slice(&data);
        chunk(RES_STRING_POOL_TYPE, &header, &body)
    }

    fn node_header() -> Vec<u8> {
        let mut h = Vec::new();
        push32(&mut h, 1); // line
        push32(&mut h, NO_ENTRY); // comment
        h
    }

    /// A whole AXML document: pool, resource map, namespace, `<element attrs/>`.
    fn axml_doc(
        strings: &[&str],
        utf8: bool,
        res_map: &[u32],
        element: u32,
        attrs: &[Attr],
    ) -> Vec<u8> {
        let ns_prefix = strings.iter().position(|s| *s == "android").unwrap_or(0) as u32;
        let ns_uri = strings.iter().position(|s| *s == ANDROID_NS).unwrap_or(0) as u32;
        let mut body = string_pool(strings, utf8);
        let mut map = Vec::new();
        for id in res_map {
            push32(&mut map, *id);
        }
        body.extend(chunk(RES_XML_RESOURCE_MAP_TYPE, &[], &map));
        let mut ns = Vec::new();
        push32(&mut ns, ns_prefix);
        push32(&mut ns, ns_uri);
        body.extend(chunk(0x0100, &node_header(), &ns));
        let mut ext = Vec::new();
        push32(&mut ext, NO_ENTRY); // ns
        push32(&mut ext, element);
        push16(&mut ext, 20); // attributeStart
        push16(&mut ext, 20); // attributeSize
        push16(&mut ext, attrs.len() as u16);
        push16(&mut ext, 0);
        push16(&mut ext, 0);
        push16(&mut ext, 0);
        for a in attrs {
            push32(&mut ext, a.ns);
            push32(&mut ext, a.name);
            push32(&mut ext, a.raw);
            push16(&mut ext, 8);
            ext.push(0);
            ext.push(a.ty);
            push32(&mut ext, a.data);
        }
        body.extend(chunk(RES_XML_START_ELEMENT_TYPE, &node_header(), &ext));
        let mut end = Vec::new();
        push32(&mut end, NO_ENTRY);
        push32(&mut end, element);
        body.extend(chunk(0x0103, &node_header(), &end));
        body.extend(chunk(0x0101, &node_header(), &ns));
        chunk(RES_XML_TYPE, &[], &body)
    }

    fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// The usual aapt2 layout: attribute names with resource ids first, then the rest.
    /// `code` is (dataType, data); versionName is the string "4.2.0".
    fn manifest(utf8: bool, code: (u8, u32), names: [&str; 2]) -> Vec<u8> {
        let strings = [
            names[0],
            names[1],
            "android",
            ANDROID_NS,
            "package",
            "manifest",
            "com.acme.kiosk",
            "4.2.0",
        ];
        let attrs = [
            Attr {
                ns: 3,
                name: 0,
                raw: NO_ENTRY,
                ty: code.0,
                data: code.1,
            },
            Attr {
                ns: 3,
                name: 1,
                raw: 7,
                ty: TYPE_STRING,
                data: 7,
            },
            Attr {
                ns: NO_ENTRY,
                name: 4,
                raw: 6,
                ty: TYPE_STRING,
                data: 6,
            },
        ];
        axml_doc(
            &strings,
            utf8,
            &[ATTR_VERSION_CODE, ATTR_VERSION_NAME],
            5,
            &attrs,
        )
    }

    fn apk(axml: &[u8]) -> Vec<u8> {
        zip_with(&[
            ("AndroidManifest.xml", axml),
            ("classes.dex", b"dex\n035\0"),
        ])
    }

    fn kiosk(code: &str, name: Option<&str>) -> ApkInfo {
        ApkInfo {
            package: "com.acme.kiosk".into(),
            version_code: code.into(),
            version_name: name.map(str::to_string),
        }
    }

    const NAMES: [&str; 2] = ["versionCode", "versionName"];

    #[test]
    fn real_apk_decimal_version_code_utf8_and_utf16() {
        for utf8 in [true, false] {
            let bytes = apk(&manifest(utf8, (TYPE_INT_DEC, 420), NAMES));
            assert_eq!(read(&bytes), Ok(kiosk("420", Some("4.2.0"))), "utf8={utf8}");
        }
    }

    #[test]
    fn real_apk_hex_version_code() {
        for utf8 in [true, false] {
            let bytes = apk(&manifest(utf8, (TYPE_INT_HEX, 0x1a4), NAMES));
            assert_eq!(read(&bytes), Ok(kiosk("420", Some("4.2.0"))), "utf8={utf8}");
        }
    }

    #[test]
    fn real_apk_empty_attribute_names_use_resource_map() {
        for utf8 in [true, false] {
            let bytes = apk(&manifest(utf8, (TYPE_INT_DEC, 7), ["", ""]));
            assert_eq!(read(&bytes), Ok(kiosk("7", Some("4.2.0"))), "utf8={utf8}");
        }
    }

    #[test]
    fn names_alone_work_without_resource_map() {
        let strings = [
            "manifest",
            "package",
            "versionCode",
            "versionName",
            "com.acme.kiosk",
            "12",
        ];
        let attrs = [
            Attr {
                ns: NO_ENTRY,
                name: 1,
                raw: 4,
                ty: TYPE_STRING,
                data: 4,
            },
            // versionCode as a string value
            Attr {
                ns: NO_ENTRY,
                name: 2,
                raw: 5,
                ty: TYPE_STRING,
                data: 5,
            },
            // versionName as a reference to @string/...: unresolvable
            Attr {
                ns: NO_ENTRY,
                name: 3,
                raw: NO_ENTRY,
                ty: TYPE_REFERENCE,
                data: 0x7f0f_0001,
            },
        ];
        for utf8 in [true, false] {
            let doc = axml_doc(&strings, utf8, &[], 0, &attrs);
            assert_eq!(read(&apk(&doc)), Ok(kiosk("12", None)), "utf8={utf8}");
        }
    }

    #[test]
    fn long_strings_use_two_unit_lengths() {
        // > 0x7F bytes for UTF-8, > 0x7FFF units for UTF-16; non-ASCII too.
        let long8 = format!("4.2.0-β{}", "x".repeat(300));
        let long16 = format!("4.2.0-β{}", "y".repeat(40_000));
        for (utf8, name) in [(true, &long8), (false, &long16)] {
            let strings = [
                "versionCode",
                "versionName",
                "package",
                "manifest",
                "com.acme.kiosk",
                name,
            ];
            let attrs = [
                Attr {
                    ns: NO_ENTRY,
                    name: 2,
                    raw: 4,
                    ty: TYPE_STRING,
                    data: 4,
                },
                Attr {
                    ns: NO_ENTRY,
                    name: 0,
                    raw: NO_ENTRY,
                    ty: TYPE_INT_DEC,
                    data: 3,
                },
                Attr {
                    ns: NO_ENTRY,
                    name: 1,
                    raw: 5,
                    ty: TYPE_STRING,
                    data: 5,
                },
            ];
            let doc = axml_doc(
                &strings,
                utf8,
                &[ATTR_VERSION_CODE, ATTR_VERSION_NAME],
                3,
                &attrs,
            );
            assert_eq!(read(&apk(&doc)), Ok(kiosk("3", Some(name))), "utf8={utf8}");
        }
    }

    #[test]
    fn missing_version_code_and_bad_package_are_errors() {
        let strings = ["manifest", "package", "com.acme.kiosk", "not a package"];
        let only_package = [Attr {
            ns: NO_ENTRY,
            name: 1,
            raw: 2,
            ty: TYPE_STRING,
            data: 2,
        }];
        let doc = axml_doc(&strings, true, &[], 0, &only_package);
        assert_eq!(
            read(&apk(&doc)),
            Err(ApkError::MissingAttribute("android:versionCode"))
        );
        let bad = [Attr {
            ns: NO_ENTRY,
            name: 1,
            raw: 3,
            ty: TYPE_STRING,
            data: 3,
        }];
        let doc = axml_doc(&strings, true, &[], 0, &bad);
        assert!(matches!(
            read(&apk(&doc)),
            Err(ApkError::MissingAttribute(_))
        ));
        let strings = ["manifest", "package", "versionCode", "not a package"];
        let bad = [
            Attr {
                ns: NO_ENTRY,
                name: 1,
                raw: 3,
                ty: TYPE_STRING,
                data: 3,
            },
            Attr {
                ns: NO_ENTRY,
                name: 2,
                raw: NO_ENTRY,
                ty: TYPE_INT_DEC,
                data: 1,
            },
        ];
        let doc = axml_doc(&strings, true, &[], 0, &bad);
        assert_eq!(
            read(&apk(&doc)),
            Err(ApkError::InvalidPackage("not a package".into()))
        );
    }

    #[test]
    fn no_manifest_element_is_an_error() {
        let strings = ["application", "package"];
        let doc = axml_doc(&strings, true, &[], 0, &[]);
        assert_eq!(read(&apk(&doc)), Err(ApkError::NoManifestElement));
    }

    #[test]
    fn zip_without_manifest_is_a_clear_error() {
        let bytes = zip_with(&[("classes.dex", b"dex\n035\0")]);
        let err = read(&bytes).unwrap_err();
        assert_eq!(err, ApkError::NoManifest);
        assert_eq!(
            err.to_string(),
            "not an APK: no AndroidManifest.xml in the archive; check the file is an .apk, not an .aab or another ZIP"
        );
    }

    #[test]
    fn text_manifest_in_zip_is_malformed_axml() {
        let bytes = apk(b"<manifest package=\"com.acme.kiosk\"/>");
        assert!(matches!(read(&bytes), Err(ApkError::Axml(_))));
    }

    #[test]
    fn mock_apk_with_and_without_version_name() {
        let full = b"package=com.acme.kiosk\nversion_code=420\nversion_name=4.2.0\napplication_name=Kiosk\n";
        assert_eq!(read(full), Ok(kiosk("420", Some("4.2.0"))));
        let short = b"# a mock\r\n\r\n package = com.acme.kiosk \r\nversion_code=420";
        assert_eq!(read(short), Ok(kiosk("420", None)));
        let empty_name = b"package=com.acme.kiosk\nversion_code=420\nversion_name=\n";
        assert_eq!(read(empty_name), Ok(kiosk("420", None)));
    }

    #[test]
    fn mock_apk_errors() {
        let missing = b"version_code=420\nversion_name=4.2.0\n";
        let err = read(missing).unwrap_err();
        assert!(matches!(
            err,
            ApkError::MockMissing {
                key: "package=",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "mock APK has no package= line; add one such as package=com.acme.kiosk"
        );
        assert!(matches!(
            read(b"package=com.acme.kiosk\n"),
            Err(ApkError::MockMissing {
                key: "version_code=",
                ..
            })
        ));
        assert_eq!(
            read(b"package=com.acme.kiosk\nversion_code=4.2\n"),
            Err(ApkError::InvalidVersionCode("4.2".into()))
        );
        assert_eq!(
            read(b"package=kiosk\nversion_code=1\n"),
            Err(ApkError::InvalidPackage("kiosk".into()))
        );
        assert_eq!(read(b"hello\n"), Err(ApkError::MockLine("hello".into())));
        assert_eq!(read(&[0xff, 0xfe, 0x00]), Err(ApkError::NotApk));
        assert!(matches!(read(b""), Err(ApkError::MockMissing { .. })));
    }

    #[test]
    fn version_code_strings_normalise() {
        assert_eq!(version_code_from_str(" 0420 "), Ok("420".into()));
        assert_eq!(version_code_from_str("0x1A4"), Ok("420".into()));
        assert!(version_code_from_str("0x").is_err());
        assert!(version_code_from_str("-1").is_err());
        assert!(version_code_from_str("").is_err());
    }

    #[test]
    fn error_messages_are_lowercase_without_trailing_period() {
        let all = [
            ApkError::Zip("x".into()),
            ApkError::NoManifest,
            ApkError::ManifestTooLarge { limit: 1 },
            ApkError::Axml("x".into()),
            ApkError::NoManifestElement,
            ApkError::MissingAttribute("package"),
            ApkError::InvalidPackage("x".into()),
            ApkError::InvalidVersionCode("x".into()),
            ApkError::NotApk,
            ApkError::MockLine("x".into()),
            ApkError::MockMissing {
                key: "package=",
                example: "package=a.b",
            },
        ];
        for e in all {
            let m = e.to_string();
            assert!(m.starts_with(|c: char| c.is_ascii_lowercase()), "{m}");
            assert!(!m.ends_with('.'), "{m}");
        }
    }

    /// Every prefix and thousands of seeded corruptions of a valid APK and of its bare AXML:
    /// `read` and the AXML parser must return (Ok or Err), never panic or hang.
    #[test]
    fn truncated_and_corrupted_inputs_never_panic() {
        let docs = [
            manifest(true, (TYPE_INT_DEC, 420), NAMES),
            manifest(false, (TYPE_INT_HEX, 420), ["", ""]),
        ];
        let apks: Vec<Vec<u8>> = docs.iter().map(|d| apk(d)).collect();
        for input in docs.iter().chain(&apks) {
            for cut in 0..input.len() {
                let _ = read(&input[..cut]);
                let _ = parse_manifest(&input[..cut]);
            }
        }
        let mut rng = fastrand::Rng::with_seed(0x05ee_da9c);
        for i in 0..4000 {
            let base = if i % 2 == 0 {
                &docs[i / 2 % 2]
            } else {
                &apks[i / 2 % 2]
            };
            let mut v = base.clone();
            for _ in 0..rng.usize(1..=4) {
                let at = rng.usize(..v.len());
                v[at] = match rng.u8(..4) {
                    0 => 0xFF,
                    1 => 0x00,
                    2 => v[at] ^ (1 << rng.u8(..8)),
                    _ => rng.u8(..),
                };
            }
            if rng.bool() {
                let cut = rng.usize(..=v.len());
                v.truncate(cut);
            }
            let _ = read(&v);
            let _ = parse_manifest(&v);
        }
    }
}
