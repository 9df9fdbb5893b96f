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

mod axml;
pub mod write;

use axml::parse_manifest;

#[cfg(test)]
mod tests;
