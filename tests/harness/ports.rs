//! Which TCP ports a process listens on, read from `/proc`.
//!
//! Choosing a free port and handing it to a server leaves a window in which another process can
//! take it; the server then fails to bind, or worse, a readiness probe reaches the other process
//! and passes. So servers that can are started on port 0 and the harness reads back the port the
//! kernel gave them ([`wait_listening`]); for those that must be told their port in advance (etcd,
//! kube-apiserver, … advertise it), the harness checks that the process it started is the one
//! holding the port ([`listening_ports`]) before it believes a probe.

use std::{
    collections::{BTreeSet, HashSet},
    io,
    process::Child,
    time::{Duration, Instant},
};

/// A free port on 127.0.0.1 at the time of asking, for a server that must be told its port
/// (it advertises it): another process may take it before the server binds it, which the caller
/// detects with [`listening_ports`] and answers by trying other ports.
pub fn free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The TCP ports (IPv4 and IPv6) on which process `pid` holds a listening socket. Empty once the
/// process is gone.
pub fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes = socket_inodes(pid).unwrap_or_default();
    let mut ports = BTreeSet::new();
    if inodes.is_empty() {
        return ports;
    }
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        ports.extend(listeners(&text, &inodes));
    }
    ports
}

/// Waits until `child` listens on a TCP port and returns it (the lowest, if several). Fails when
/// the process exits first or `within` passes, saying which.
pub fn wait_listening(child: &mut Child, within: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(port) = listening_ports(child.id()).first() {
            return Ok(*port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited ({status}) before listening"));
        }
        if Instant::now() >= deadline {
            return Err(format!("not listening after {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The inodes of the sockets among `pid`'s open files (`/proc/<pid>/fd/N -> socket:[inode]`).
fn socket_inodes(pid: u32) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok())
        {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// Ports of the LISTEN sockets in a `/proc/net/tcp{,6}` table whose inode is in `inodes`.
/// Columns: `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`, the
/// local address as `HEXIP:HEXPORT`, state `0A` = LISTEN.
fn listeners<'a>(table: &'a str, inodes: &'a HashSet<u64>) -> impl Iterator<Item = u16> + 'a {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        if *state != "0A" || !inodes.contains(&inode.parse().ok()?) {
            return None;
        }
        u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_ports(std::process::id()).contains(&port));
        drop(listener);
        assert!(!listening_ports(std::process::id()).contains(&port));
    }

    #[test]
    fn parses_a_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0\n\
           1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0\n\
           2: 0100007F:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 9999 1 0\n";
        let ours: HashSet<u64> = [4242, 4243].into();
        assert_eq!(listeners(table, &ours).collect::<Vec<_>>(), vec![8080]);
    }
}
