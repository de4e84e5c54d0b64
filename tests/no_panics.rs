//! Arbitrary input never panics: it gives a value or an error. A bounded number of cases per
//! run (PROPTEST_CASES, default 256); the parsers are the code that sees hostile bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use forksafe::config::{Settings, Source};
use forksafe::knob::{Kind, Knob, normalize, sysctl_key_to_path};
use forksafe::sysctl_d::{Table, glob_match, normalize_key, parse};
use proptest::prelude::*;
use std::path::Path;

/// Bytes that look a little like the inputs: TOML-ish and sysctl.d-ish fragments mixed with
/// anything at all.
fn config_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("[daemon]\n".to_string()),
        Just("[sysctl]\n".to_string()),
        Just("[sysfs]\n".to_string()),
        Just("[sysctl_d]\n".to_string()),
        Just("[report]\n".to_string()),
        Just("interval = \"".to_string()),
        Just("\"vm.overcommit_memory\" = ".to_string()),
        Just("vm.overcommit_memory = ".to_string()),
        Just("\"kernel/mm/transparent_hugepage/enabled\" = \"".to_string()),
        Just("= \"never\"\n".to_string()),
        "[0-9a-z.{}\\[\\]\"=/ \n-]{0,20}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn config_parse_never_panics(text in config_like()) {
        let _ = Settings::parse(&text, Source::Builtin);
    }

    #[test]
    fn config_parse_any_string_never_panics(text in any::<String>()) {
        let _ = Settings::parse(&text, Source::Builtin);
    }

    #[test]
    fn sysctl_d_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let all = parse(&bytes, Path::new("/etc/sysctl.d/fuzz.conf"));
        let table = Table::from_assignments(all);
        let _ = table.effective("vm/overcommit_memory");
        let _ = table.judge("vm/overcommit_memory", "1", Some(Path::new("/etc/sysctl.d/fuzz.conf")));
    }

    #[test]
    fn sysctl_d_lines_never_panic(text in "([-#; \t]{0,2}[a-z.*?\\[\\]{}/!^,-]{0,16}[ \t]*=?[ \t]*[0-9a-z ]{0,6}[\r\n\0]{0,2}){0,20}") {
        let all = parse(text.as_bytes(), Path::new("/etc/sysctl.d/fuzz.conf"));
        let table = Table::from_assignments(all);
        let _ = table.effective("net/ipv4/conf/eth0/rp_filter");
    }

    #[test]
    fn keys_and_globs_never_panic(pattern in "[a-z.*?\\[\\]{}/!^,\\\\-]{0,24}", key in "[a-z./_]{0,24}") {
        let _ = glob_match(&normalize_key(&pattern), &normalize_key(&key));
        let _ = sysctl_key_to_path(&key);
        let _ = Knob::new(Kind::Sysctl, &pattern, "1");
        let _ = Knob::new(Kind::Sysfs, &pattern, "never");
    }

    #[test]
    fn kernel_values_never_panic(text in any::<String>()) {
        let _ = normalize(&text);
    }

    /// The legacy scan reads shell text anyone could have written.
    #[test]
    fn shell_lines_never_panic(text in "([a-z/_.=>|&;$'\"\\ -]{0,12}(echo|sysctl|tee|sh -c|never|/sys/kernel/mm/transparent_hugepage/enabled|vm.overcommit_memory=)?){0,8}") {
        let s = Settings::parse(forksafe::config::DEFAULT_CONFIG, Source::Builtin).unwrap();
        let _ = forksafe::legacy::scan_text(&s, &text);
    }

    /// doctor reads whatever a socket a database process holds sends back.
    #[test]
    fn resp_replies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut r = std::io::BufReader::new(&bytes[..]);
        let _ = forksafe::dbask::read_reply(&mut r, 0);
        let _ = forksafe::dbask::parse_info(&String::from_utf8_lossy(&bytes));
        let _ = forksafe::dbask::parse_tcp(&String::from_utf8_lossy(&bytes));
        let _ = forksafe::dbask::parse_unix(&String::from_utf8_lossy(&bytes));
    }
}
