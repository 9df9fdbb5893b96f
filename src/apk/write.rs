//! Writes minimal APKs: a ZIP with a binary-XML `AndroidManifest.xml` holding a package,
//! versionCode and versionName, and a stub `classes.dex`. The reader's unit tests build
//! every manifest layout with it, the integration tests upload a real APK to the mock
//! with it, and `esper-bulk mock` users can make one to try an upload. It writes nothing
//! a device could install: no code, no signature, no resources.

use std::io::{Cursor, Write};

use super::axml::*;

pub(super) const ANDROID_NS: &str = "http://schemas.android.com/apk/res/android";

/// An APK whose manifest declares `package`, `versionCode` and `versionName`, laid out as
/// aapt2 does (attributes with resource ids first). Readable by [`super::read`].
pub fn minimal_apk(package: &str, version_code: u32, version_name: &str) -> Vec<u8> {
    let strings = [
        "versionCode",
        "versionName",
        "android",
        ANDROID_NS,
        "package",
        "manifest",
        package,
        version_name,
    ];
    let attrs = [
        Attr {
            ns: 3,
            name: 0,
            raw: NO_ENTRY,
            ty: TYPE_INT_DEC,
            data: version_code,
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
    let manifest = axml_doc(
        &strings,
        true,
        &[ATTR_VERSION_CODE, ATTR_VERSION_NAME],
        5,
        &attrs,
    );
    zip_with(&[
        ("AndroidManifest.xml", &manifest),
        ("classes.dex", b"dex\n035\0"),
    ])
}

/// One `<manifest>` attribute for the builder.
pub(super) struct Attr {
    pub ns: u32,
    pub name: u32,
    pub raw: u32,
    pub ty: u8,
    pub data: u32,
}

pub(super) fn push16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}

pub(super) fn push32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

pub(super) fn chunk(kind: u16, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    push16(&mut v, kind);
    push16(&mut v, (8 + header.len()) as u16);
    push32(&mut v, (8 + header.len() + body.len()) as u32);
    v.extend_from_slice(header);
    v.extend_from_slice(body);
    v
}

pub(super) fn string_pool(strings: &[&str], utf8: bool) -> Vec<u8> {
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

pub(super) fn node_header() -> Vec<u8> {
    let mut h = Vec::new();
    push32(&mut h, 1); // line
    push32(&mut h, NO_ENTRY); // comment
    h
}

/// A whole AXML document: pool, resource map, namespace, `<element attrs/>`.
pub(super) fn axml_doc(
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

pub(super) fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}
