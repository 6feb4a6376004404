//! Opening the configured ports and planning their queues.
//!
//! Every worker gets its own TX queue on every port (so transmit needs no
//! lock). RX queues go to the first `min(workers, driver's max)` workers: a
//! single-queue vdev is polled by worker 0 alone and the handoff queues
//! spread the work (DESIGN §4). A port whose driver cannot give each worker a
//! TX queue is refused with the config path of its device.
use dpdk::{Eal, Mempool, Port, PortConfig};

use crate::config::{Dataplane, PortSpec};
use crate::pipeline::Queues;

/// The ports by role, in [`crate::metrics::PORT_NAMES`] order.
pub const OUTSIDE: usize = 0;
pub const INSIDE: usize = 1;
pub const PUNT: usize = 2;

/// An opened, configured and started port.
pub struct OpenPort {
    pub role: usize,
    pub port: Port,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub mac: [u8; 6],
    pub driver: String,
}

/// Probes, configures and starts the outside, inside and (if any) punt
/// ports for `workers` workers. Errors name the config field.
pub fn open_ports(eal: &Eal, cfg: &Dataplane, pool: Mempool) -> Result<Vec<OpenPort>, String> {
    let workers = cfg.workers.count;
    let mut out = Vec::new();
    let specs: [(usize, &str, Option<&PortSpec>); 3] = [
        (OUTSIDE, "outside", Some(&cfg.ports.outside)),
        (INSIDE, "inside", Some(&cfg.ports.inside)),
        (PUNT, "punt", cfg.ports.punt.as_ref()),
    ];
    for (role, name, spec) in specs {
        let Some(spec) = spec else { continue };
        let path = format!("dataplane.ports.{name}.device");
        let mut device = spec.device.clone();
        // The kernel behind a TAP punt port owns the gateway's outside
        // address; giving the TAP the outside port's MAC lets its frames
        // (ARP and ND included) go out unchanged and replies come back to it.
        if role == PUNT && device.starts_with("net_tap") && !device.contains("mac=") {
            if let Some(o) = out.iter().find(|p: &&OpenPort| p.role == OUTSIDE) {
                let m = o.mac;
                device += &format!(",mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
            }
        }
        // The TAP outlives the process (DPDK's `persist`): the kernel keeps
        // it, its gateway address and routes while the dataplane is down or
        // restarting, so esprit-ike's sockets bound to that address stay
        // valid, and a restarted dataplane attaches to the same device. (A
        // TAP that went away would take the address with it; nobody would
        // put it back.) Remove it with `ip link del`.
        if role == PUNT && device.starts_with("net_tap") && !device.split(',').any(|a| a == "persist") {
            device += ",persist";
        }
        let port = Port::probe(eal, &device).map_err(|e| format!("{path}: {e}"))?;
        let info = port.info().map_err(|e| format!("{path}: {e}"))?;
        if info.max_tx_queues < workers {
            return Err(format!(
                "{path}: driver {} offers {} TX queue(s); {workers} workers need one each (fewer workers, or a device with more queues)",
                info.driver, info.max_tx_queues
            ));
        }
        let rx_queues = workers.min(info.max_rx_queues.max(1));
        port.configure(&PortConfig {
            rx_queues,
            tx_queues: workers,
            rx_desc: spec.rx_desc,
            tx_desc: spec.tx_desc,
            mempool: pool,
            promiscuous: true,
        })
        .map_err(|e| format!("{path}: {e}"))?;
        port.start().map_err(|e| format!("{path}: {e}"))?;
        let mac = port.mac().map_err(|e| format!("{path}: {e}"))?;
        out.push(OpenPort { role, port, rx_queues, tx_queues: workers, mac, driver: info.driver });
    }
    Ok(out)
}

/// Worker `worker`'s queues on the opened ports: an RX queue where the port
/// has one for it (receives limited to `burst_pkts`,
/// `dataplane.workers.burst_pkts`), a TX queue on every port.
pub fn worker_queues(opened: &[OpenPort], worker: u16, burst_pkts: u16) -> Result<Queues<'_>, String> {
    let mut q = Queues { rx: [None, None, None], tx: [None, None, None] };
    for p in opened {
        if worker < p.rx_queues {
            let mut rx = p.port.rx_queue(worker).map_err(|e| e.to_string())?;
            rx.set_burst_pkts(burst_pkts);
            q.rx[p.role] = Some(rx);
        }
        q.tx[p.role] = Some(p.port.tx_queue(worker).map_err(|e| e.to_string())?);
    }
    Ok(q)
}

/// Mbufs the pool needs: every descriptor of every queue full, plus the
/// bursts and handoff queues in flight, rounded to 2^n - 1 (DPDK's best size).
pub fn pool_size(cfg: &Dataplane) -> u32 {
    let w = cfg.workers.count as u32;
    let mut n = 0u32;
    for p in [Some(&cfg.ports.outside), Some(&cfg.ports.inside), cfg.ports.punt.as_ref()].into_iter().flatten() {
        n += w * (p.rx_desc as u32 + p.tx_desc as u32);
    }
    n += w * (cfg.workers.handoff_queue_pkts + 4 * 64 + 512);
    n.next_power_of_two().max(4096) - 1
}
