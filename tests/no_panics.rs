//! Arbitrary input never panics: it gives a value or an error. A bounded number of cases per
//! run (PROPTEST_CASES, default 256); the parsers are the code that sees hostile bytes. (The
//! config parser and the shell matcher have theirs among their unit tests.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use forksafe::{Kind, Knob, normalize, sysctl_key_to_path};
use forksafe::{Table, glob_match, normalize_key, parse};
use proptest::prelude::*;
use std::path::Path;

proptest! {
    #[test]
    fn sysctl_d_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let all = parse(&bytes, Path::new("/etc/sysctl.d/fuzz.conf"));
        let table = Table::from_assignments(all);
        let _ = table.judge("vm/overcommit_memory", "1", Some(Path::new("/etc/sysctl.d/fuzz.conf")));
    }

    #[test]
    fn sysctl_d_lines_never_panic(text in "([-#; \t]{0,2}[a-z.*?\\[\\]{}/!^,-]{0,16}[ \t]*=?[ \t]*[0-9a-z ]{0,6}[\r\n\0]{0,2}){0,20}") {
        let all = parse(text.as_bytes(), Path::new("/etc/sysctl.d/fuzz.conf"));
        let table = Table::from_assignments(all);
        let _ = table.judge("net/ipv4/conf/eth0/rp_filter", "1", None);
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

    /// doctor reads whatever a socket a database process holds sends back.
    #[test]
    fn resp_replies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut r = std::io::BufReader::new(&bytes[..]);
        let _ = forksafe::read_reply(&mut r, 0);
        let _ = forksafe::parse_info(&String::from_utf8_lossy(&bytes));
        let _ = forksafe::parse_tcp(&String::from_utf8_lossy(&bytes));
        let _ = forksafe::parse_unix(&String::from_utf8_lossy(&bytes));
    }
}
