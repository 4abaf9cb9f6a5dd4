//! What the kernel holds for TCP sockets, which no process's RSS shows: the bytes a server has
//! written but the peer has not yet acknowledged sit in the kernel's socket buffers, and for a
//! slow reader that is where the memory goes.
//!
//! Two readings, from `/proc`:
//!
//! - `/proc/net/sockstat`, `TCP: … mem N`: pages allocated to every TCP socket's buffers on the
//!   machine, in pages. It is machine-wide: both ends of each loopback connection (the driver's
//!   receive queues too), and anything else running.
//! - `/proc/net/tcp` and `/proc/net/tcp6`: one line per socket. The server's side of the
//!   connections is every socket whose *local* port is a subscribe URL's port (the listening
//!   socket left out); the sum of their `tx_queue` is what the server has written and not had
//!   acknowledged, including sockets it already closed that linger in `FIN_WAIT1` with data
//!   queued. The driver's side is every socket whose *remote* port is one of those ports; its
//!   `rx_queue` is what arrived and was not read yet. Sockets are counted by TCP state too.
//!
//! Reading the tables costs the driver about a microsecond per socket on the machine, so they
//! are read at a few moments or at a slow interval, never per event.

use std::collections::BTreeMap;

use serde::Serialize;

/// `/proc/net/tcp` state numbers, by name (`include/net/tcp_states.h`).
const STATES: [&str; 12] = [
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];
/// The state number of a listening socket.
const LISTEN: usize = 10;
/// `AT_PAGESZ` in the auxiliary vector.
const AT_PAGESZ: u64 = 6;
/// The page size where `/proc/self/auxv` cannot be read.
const DEFAULT_PAGE_SIZE: u64 = 4096;

/// The sockets of one side of the connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Side {
    /// Sockets, in any state but `LISTEN`.
    pub(crate) sockets: u64,
    /// Summed `tx_queue`: written, not yet acknowledged by the peer.
    pub(crate) send_queue_bytes: u64,
    /// Summed `rx_queue`: received, not yet read.
    pub(crate) receive_queue_bytes: u64,
    /// Sockets by TCP state (`ESTABLISHED`, `FIN_WAIT1`, …), those with none left out.
    pub(crate) states: BTreeMap<&'static str, u64>,
}

/// One reading of the kernel's TCP memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// `/proc/net/sockstat` TCP `mem`, in KiB (machine-wide); `None` if unreadable.
    pub(crate) tcp_mem_kib: Option<u64>,
    /// The server's side (local port one of the ports).
    pub(crate) server: Side,
    /// The clients' side (remote port one of the ports).
    pub(crate) clients: Side,
}

/// The machine's page size, from the auxiliary vector (`AT_PAGESZ`).
pub(crate) fn page_size() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| auxv_page_size(&auxv))
        .unwrap_or(DEFAULT_PAGE_SIZE)
}

/// `AT_PAGESZ` from the bytes of an auxiliary vector of native-endian 64-bit pairs.
fn auxv_page_size(auxv: &[u8]) -> Option<u64> {
    let word = |bytes: &[u8]| bytes.try_into().ok().map(u64::from_ne_bytes);
    auxv.chunks_exact(16)
        .filter_map(|pair| Some((word(&pair[..8])?, word(&pair[8..])?)))
        .find(|&(key, _)| key == AT_PAGESZ)
        .map(|(_, value)| value)
}

/// The TCP `mem` figure of a `/proc/net/sockstat` text, in pages.
fn sockstat_tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|line| line.starts_with("TCP:"))?;
    let mut fields = line.split_whitespace();
    while let Some(field) = fields.next() {
        if field == "mem" {
            return fields.next()?.parse().ok();
        }
    }
    None
}

/// Adds the sockets of a `/proc/net/tcp` (or `tcp6`) text to `server` (local port in `ports`)
/// and `clients` (remote port in `ports`). Lines that do not parse are skipped.
fn add_table(table: &str, ports: &[u16], server: &mut Side, clients: &mut Side) {
    // sl local_address rem_address st tx_queue:rx_queue …, addresses as HEXIP:HEXPORT.
    for line in table.lines().skip(1) {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(local), Some(remote), Some(state), Some(queues)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let port = |address: &str| {
            let (_, port) = address.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        };
        let Ok(state) = usize::from_str_radix(state, 16) else {
            continue;
        };
        let Some((tx, rx)) = queues.split_once(':') else {
            continue;
        };
        let (Ok(tx), Ok(rx)) = (u64::from_str_radix(tx, 16), u64::from_str_radix(rx, 16)) else {
            continue;
        };
        let side = if port(local).is_some_and(|port| ports.contains(&port)) {
            if state == LISTEN {
                continue;
            }
            &mut *server
        } else if port(remote).is_some_and(|port| ports.contains(&port)) {
            &mut *clients
        } else {
            continue;
        };
        side.sockets += 1;
        side.send_queue_bytes += tx;
        side.receive_queue_bytes += rx;
        *side
            .states
            .entry(STATES.get(state).copied().unwrap_or("UNKNOWN"))
            .or_default() += 1;
    }
}

/// `/proc/net/sockstat` TCP `mem` now, in KiB (machine-wide); `None` if unreadable.
pub(crate) fn tcp_mem_kib(page_size: u64) -> Option<u64> {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|sockstat| sockstat_tcp_mem_pages(&sockstat))
        .map(|pages| pages * page_size / 1024)
}

/// Reads the kernel's TCP memory now, for the connections to `ports`.
pub(crate) fn sample(ports: &[u16], page_size: u64) -> Sample {
    let mut sample = Sample {
        tcp_mem_kib: tcp_mem_kib(page_size),
        ..Sample::default()
    };
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(table) = std::fs::read_to_string(path) {
            add_table(&table, ports, &mut sample.server, &mut sample.clients);
        }
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_gives_tcp_pages() {
        let text = "sockets: used 290\n\
                    TCP: inuse 5 orphan 1 tw 3 alloc 7 mem 42\n\
                    UDP: inuse 0 mem 9\n";
        assert_eq!(sockstat_tcp_mem_pages(text), Some(42));
        assert_eq!(sockstat_tcp_mem_pages("UDP: inuse 0 mem 9\n"), None);
        assert_eq!(sockstat_tcp_mem_pages("TCP: inuse 5 mem\n"), None);
    }

    #[test]
    fn the_tables_split_server_and_client_sides_by_port() {
        // Port 18180 is 0x4704; 46B4 is another port.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:4704 00000000:0000 0A 00000000:00000010 00:00000000 00000000  0 0 1 1\n\
           1: 0100007F:4704 0100007F:9C40 01 00001000:00000000 00:00000000 00000000  0 0 2 1\n\
           2: 0100007F:4704 0100007F:9C41 04 00000800:00000000 00:00000000 00000000  0 0 3 1\n\
           3: 0100007F:9C40 0100007F:4704 01 00000000:00002000 00:00000000 00000000  0 0 4 1\n\
           4: 0100007F:46B4 0100007F:9C42 01 00000005:00000000 00:00000000 00000000  0 0 5 1\n\
           garbage\n";
        let (mut server, mut clients) = (Side::default(), Side::default());
        add_table(table, &[18180], &mut server, &mut clients);
        assert_eq!(server.sockets, 2);
        assert_eq!(server.send_queue_bytes, 0x1800);
        assert_eq!(
            server.states,
            BTreeMap::from([("ESTABLISHED", 1), ("FIN_WAIT1", 1)])
        );
        assert_eq!(clients.sockets, 1);
        assert_eq!(clients.receive_queue_bytes, 0x2000);
        assert_eq!(clients.states, BTreeMap::from([("ESTABLISHED", 1)]));
    }

    #[test]
    fn this_machine_can_be_read() {
        let page = page_size();
        assert!(page >= 4096 && page.is_power_of_two(), "{page}");
        assert_eq!(auxv_page_size(&[0; 7]), None);
        let mut auxv = Vec::new();
        for (key, value) in [(3u64, 1u64), (AT_PAGESZ, 16384), (0, 0)] {
            auxv.extend(key.to_ne_bytes());
            auxv.extend(value.to_ne_bytes());
        }
        assert_eq!(auxv_page_size(&auxv), Some(16384));
        assert!(sample(&[1], page).tcp_mem_kib.is_some());
    }
}
