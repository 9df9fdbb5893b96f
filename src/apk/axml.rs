//! Android's binary XML (AXML) as found in an APK's `AndroidManifest.xml`: a small,
//! bounds-checked reader of chunks and string pools that looks only at the `<manifest>`
//! element's package, versionCode and versionName. Finding the manifest in the ZIP and the
//! mock's text format are left to the module root; resources are never resolved.

use super::{ApkError, ApkInfo, version_code_from_str};

pub(super) const RES_STRING_POOL_TYPE: u16 = 0x0001;
pub(super) const RES_XML_TYPE: u16 = 0x0003;
pub(super) const RES_XML_START_ELEMENT_TYPE: u16 = 0x0102;
pub(super) const RES_XML_RESOURCE_MAP_TYPE: u16 = 0x0180;

pub(super) const UTF8_FLAG: u32 = 0x100;
pub(super) const NO_ENTRY: u32 = 0xFFFF_FFFF;

pub(super) const TYPE_REFERENCE: u8 = 0x01;
pub(super) const TYPE_ATTRIBUTE: u8 = 0x02;
pub(super) const TYPE_STRING: u8 = 0x03;
pub(super) const TYPE_DYNAMIC_REFERENCE: u8 = 0x07;
pub(super) const TYPE_INT_DEC: u8 = 0x10;
pub(super) const TYPE_INT_HEX: u8 = 0x11;

pub(super) const ATTR_VERSION_CODE: u32 = 0x0101_021b;
pub(super) const ATTR_VERSION_NAME: u32 = 0x0101_021c;

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
pub(super) fn parse_manifest(buf: &[u8]) -> Result<ApkInfo, ApkError> {
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
