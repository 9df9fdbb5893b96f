//! Unit tests of the APK reader: a tiny AXML and ZIP writer builds manifests in memory,
//! so every parser branch (string pools, attributes, truncation, the mock's text form) is
//! exercised without shipping binary fixtures.

use super::axml::*;
use super::write::*;
use super::*;

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
    let full =
        b"package=com.acme.kiosk\nversion_code=420\nversion_name=4.2.0\napplication_name=Kiosk\n";
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

#[test]
fn the_minimal_apk_writer_round_trips() {
    let info = read(&minimal_apk("com.acme.scan", 77, "7.7")).unwrap();
    assert_eq!(
        info,
        ApkInfo {
            package: "com.acme.scan".into(),
            version_code: "77".into(),
            version_name: Some("7.7".into()),
        }
    );
}
