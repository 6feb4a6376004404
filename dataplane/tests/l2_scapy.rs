//! ARP and ND replies checked by an independent implementation: scapy builds
//! the requests, esprit answers them, scapy parses the answers and recomputes
//! their checksums. Needs Debian's python3-scapy (scripts/setup); fails
//! loudly without it.
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use esprit_dataplane::l2::{handle_arp, handle_nd, L2Action, NeighbourTable, ND_REPLY_LEN};

fn scapy(script: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (Debian's python3 with python3-scapy; run scripts/setup)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "scapy script failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

#[test]
fn scapy_accepts_our_arp_reply() {
    let req = scapy(
        "import sys\nfrom scapy.all import Ether, ARP\n\
         sys.stdout.buffer.write(bytes(Ether(src='02:00:00:00:00:99', dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='02:00:00:00:00:99', psrc='172.16.1.9', pdst='172.16.1.5')))",
        b"",
    );
    let t = NeighbourTable::new(16);
    let mut f = req.clone();
    assert_eq!(handle_arp(&mut f, OUR_MAC, &["172.16.1.5".parse::<IpAddr>().unwrap()], &t), L2Action::Reply);
    let verdict = scapy(
        "import sys\nfrom scapy.all import Ether, ARP\n\
         p = Ether(sys.stdin.buffer.read())\n\
         a = p[ARP]\n\
         ok = a.op == 2 and a.hwsrc == '02:00:00:00:00:01' and a.psrc == '172.16.1.5' and a.hwdst == '02:00:00:00:00:99' and a.pdst == '172.16.1.9' and p.dst == '02:00:00:00:00:99'\n\
         print('ok' if ok else 'bad ' + p.summary())",
        &f,
    );
    assert_eq!(String::from_utf8_lossy(&verdict).trim(), "ok");
}

#[test]
fn scapy_accepts_our_neighbour_advertisement() {
    let req = scapy(
        "import sys\nfrom scapy.all import Ether, IPv6, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr\n\
         p = Ether(src='02:00:00:00:00:99', dst='33:33:ff:00:00:01')/IPv6(src='2001:db8::99', dst='ff02::1:ff00:1', hlim=255)/ICMPv6ND_NS(tgt='2001:db8::1')/ICMPv6NDOptSrcLLAddr(lladdr='02:00:00:00:00:99')\n\
         sys.stdout.buffer.write(bytes(p))",
        b"",
    );
    let t = NeighbourTable::new(16);
    let mut f = req.clone();
    assert_eq!(handle_nd(&mut f, OUR_MAC, &["2001:db8::1".parse::<IpAddr>().unwrap()], &t), L2Action::Reply);
    f.truncate(ND_REPLY_LEN);
    assert_eq!(t.lookup("2001:db8::99".parse().unwrap()), Some([0x02, 0, 0, 0, 0, 0x99]));
    let verdict = scapy(
        "import sys\nfrom scapy.all import Ether, IPv6, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr\n\
         raw = sys.stdin.buffer.read()\n\
         p = Ether(raw)\n\
         na = p[ICMPv6ND_NA]\n\
         ck = na.cksum\n\
         q = Ether(raw); del q[ICMPv6ND_NA].cksum; q = Ether(bytes(q))\n\
         ok = ck == q[ICMPv6ND_NA].cksum and na.tgt == '2001:db8::1' and na.S == 1 and na.O == 1 and p[IPv6].hlim == 255 \
              and p[IPv6].dst == '2001:db8::99' and p[ICMPv6NDOptDstLLAddr].lladdr == '02:00:00:00:00:01'\n\
         print('ok' if ok else 'bad %s %x %x' % (p.summary(), ck, q[ICMPv6ND_NA].cksum))",
        &f,
    );
    assert_eq!(String::from_utf8_lossy(&verdict).trim(), "ok");
}
