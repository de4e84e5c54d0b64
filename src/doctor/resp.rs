//! The RESP protocol, as much of it as doctor speaks: a command encoded as an array of bulk
//! strings, and a reader for one reply that never holds more than a budget it is given (the
//! bytes it consumes, plus what each array element costs in memory), shared by every reply
//! of one exchange, so nested arrays of large strings cannot grow past it. Also `INFO`'s
//! `key:value` lines. Pure: no sockets here (see [`super::ask`]).

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};

/// What one database may make doctor hold, all its replies together (INFO is a few kB).
pub(crate) const MAX_REPLY: usize = 1024 * 1024;

/// How deeply arrays may nest (doctor's replies nest once).
const MAX_DEPTH: u8 = 4;

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n` (None for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`).
    Array(Option<Vec<Reply>>),
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Take `n` from what may still be read.
fn charge(budget: &mut usize, n: Option<usize>) -> io::Result<()> {
    *budget = n
        .and_then(|n| budget.checked_sub(n))
        .ok_or_else(|| bad("a reply larger than doctor reads"))?;
    Ok(())
}

/// Read one reply, never more than [`MAX_REPLY`] of it in all.
pub fn read_reply(r: &mut impl BufRead, depth: u8) -> io::Result<Reply> {
    let mut budget = MAX_REPLY;
    read_within(r, &mut budget, depth)
}

/// Read one reply within `budget` (bytes read, and each array element's size in memory),
/// which shrinks by what it took.
pub(crate) fn read_within(
    r: &mut impl BufRead,
    budget: &mut usize,
    depth: u8,
) -> io::Result<Reply> {
    let mut line = Vec::new();
    // One byte past the budget: a longer line is refused as too large, not as truncated.
    let cap = u64::try_from(*budget).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap).read_until(b'\n', &mut line)?;
    charge(budget, Some(line.len()))?;
    if !line.ends_with(b"\r\n") {
        return Err(bad("the connection closed mid-reply"));
    }
    line.truncate(line.len().saturating_sub(2));
    let (kind, rest) = line.split_first().ok_or_else(|| bad("an empty reply"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let num = || text.parse::<i64>().map_err(|_| bad("a malformed length"));
    Ok(match kind {
        b'+' => Reply::Status(text),
        b'-' => Reply::Error(text),
        b':' => Reply::Int(num()?),
        b'$' => {
            let Ok(n) = usize::try_from(num()?) else {
                return Ok(Reply::Bulk(None));
            };
            charge(budget, n.checked_add(2))?;
            let mut buf = vec![0; n.saturating_add(2)];
            r.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(bad("a bulk string longer than it said"));
            }
            buf.truncate(n);
            Reply::Bulk(Some(buf))
        }
        b'*' => {
            let Ok(n) = usize::try_from(num()?) else {
                return Ok(Reply::Array(None));
            };
            if depth >= MAX_DEPTH {
                return Err(bad("a reply nested deeper than doctor reads"));
            }
            charge(budget, n.checked_mul(std::mem::size_of::<Reply>()))?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_within(r, budget, depth + 1)?);
            }
            Reply::Array(Some(items))
        }
        _ => return Err(bad("not a RESP reply (is this a Redis port?)")),
    })
}

/// A command as RESP: an array of bulk strings.
pub(crate) fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A bulk string or status reply as text.
pub(crate) fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some(s.clone()),
        _ => None,
    }
}

/// `INFO`'s `key:value` lines.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn resp_round_trip() {
        assert_eq!(
            encode(&["CONFIG", "GET", "save"]),
            b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n"
        );
        let mut input: &[u8] =
            b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n-NOAUTH Authentication required.\r\n:5\r\n$-1\r\n";
        let mut r = BufReader::new(&mut input);
        assert_eq!(
            read_reply(&mut r, 0).unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"save".to_vec())),
                Reply::Bulk(Some(Vec::new()))
            ]))
        );
        assert_eq!(
            read_reply(&mut r, 0).unwrap(),
            Reply::Error("NOAUTH Authentication required.".into())
        );
        assert_eq!(read_reply(&mut r, 0).unwrap(), Reply::Int(5));
        assert_eq!(read_reply(&mut r, 0).unwrap(), Reply::Bulk(None));
        // Refused: a truncated reply, and something that is not RESP.
        assert!(read_reply(&mut BufReader::new(&b"$5\r\nab"[..]), 0).is_err());
        assert!(read_reply(&mut BufReader::new(&b"HTTP/1.1 400\r\n"[..]), 0).is_err());
        // Refused: a length larger than doctor reads.
        assert!(read_reply(&mut BufReader::new(&b"$99999999999\r\n"[..]), 0).is_err());
        // Refused: a bulk string whose bytes run past its length.
        assert!(read_reply(&mut BufReader::new(&b"$2\r\nabcd\r\n"[..]), 0).is_err());
    }

    #[test]
    fn the_budget_is_for_all_replies_together() {
        // Each string fits the budget alone; together they do not.
        let one = format!("${}\r\n{}\r\n", 600 * 1024, "x".repeat(600 * 1024));
        let input = format!("{one}{one}");
        let mut r = BufReader::new(input.as_bytes());
        let mut budget = MAX_REPLY;
        assert!(read_within(&mut r, &mut budget, 0).is_ok());
        assert!(budget < MAX_REPLY - 600 * 1024);
        // Refused: the second one would go past what doctor holds for one database.
        assert!(read_within(&mut r, &mut budget, 0).is_err());
        // Refused: nested arrays whose strings add up past the budget (each under it).
        let mut nested = String::from("*2\r\n*2\r\n");
        for _ in 0..4 {
            nested.push_str(&one);
        }
        assert!(read_reply(&mut BufReader::new(nested.as_bytes()), 0).is_err());
        // Refused: an array that claims more elements than the budget can hold.
        assert!(read_reply(&mut BufReader::new(&b"*100000000\r\n"[..]), 0).is_err());
        // Refused: a line longer than the budget, without ever holding more of it.
        let long = format!("+{}\r\n", "y".repeat(MAX_REPLY + 10));
        let e = read_reply(&mut BufReader::new(long.as_bytes()), 0).unwrap_err();
        assert!(e.to_string().contains("larger than doctor reads"), "{e}");
        // Refused: nesting deeper than doctor reads.
        let deep = "*1\r\n".repeat(6) + ":1\r\n";
        assert!(read_reply(&mut BufReader::new(deep.as_bytes()), 0).is_err());
    }
}
