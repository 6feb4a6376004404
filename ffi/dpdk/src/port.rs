//! Ethernet ports (PMDs, physical or virtual) and their queues.
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Burst, Eal, Error, Mempool, Result, MAX_BURST};

/// An ethdev port. Shared by the workers (`Sync`); each queue is taken once
/// by the thread that polls it.
#[derive(Debug)]
pub struct Port {
    id: u16,
    rx_taken: AtomicU64,
    tx_taken: AtomicU64,
}

/// How to set a port up.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Pool the RX queues fill from.
    pub mempool: Mempool,
    pub promiscuous: bool,
}

/// What a port's driver offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
}

/// The port's basic counters (`rte_eth_stats_get`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

impl Port {
    fn new(id: u16) -> Port {
        Port { id, rx_taken: AtomicU64::new(0), tx_taken: AtomicU64::new(0) }
    }

    /// Probes a device from a devargs string (`net_null0`, `net_pcap0,rx_pcap=a.pcap`,
    /// a PCI address, ...) and returns its port.
    pub fn probe(_eal: &Eal, devargs: &str) -> Result<Port> {
        let c = CString::new(devargs).map_err(|_| Error::invalid("rte_dev_probe", "devargs has a NUL byte"))?;
        // SAFETY: c is a valid C string for the call; the EAL is started.
        let rc = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if rc < 0 {
            return Err(Error::code("rte_dev_probe", rc).on(devargs));
        }
        let name = devargs.split(',').next().unwrap_or(devargs);
        Port::by_name(_eal, name)
    }

    /// The port of an already probed device (`--vdev` on the EAL line, or PCI).
    pub fn by_name(_eal: &Eal, name: &str) -> Result<Port> {
        let c = CString::new(name).map_err(|_| Error::invalid("rte_eth_dev_get_port_by_name", "name has a NUL byte"))?;
        let mut id = 0u16;
        // SAFETY: c is a valid C string and id a valid out-pointer for the call.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(Error::code("rte_eth_dev_get_port_by_name", rc).on(name));
        }
        Ok(Port::new(id))
    }

    /// Two `net_ring` ports wired back to back: what one sends, the other
    /// receives. `ring_size` must be a power of two.
    pub fn ring_pair(_eal: &Eal, name: &str, ring_size: u32) -> Result<(Port, Port)> {
        let mk_ring = |suffix: &str| -> Result<*mut dpdk_sys::rte_ring> {
            let rn = CString::new(format!("{name}_{suffix}")).map_err(|_| Error::invalid("rte_ring_create", "NUL in name"))?;
            // SAFETY: valid C string; flags 0 = MP/MC ring. DPDK copies the name.
            let r = unsafe { dpdk_sys::rte_ring_create(rn.as_ptr(), ring_size, 0, 0) };
            if r.is_null() { Err(Error::last("rte_ring_create").on(format!("{name}_{suffix}"))) } else { Ok(r) }
        };
        let mut ab = mk_ring("ab")?;
        let mut ba = mk_ring("ba")?;
        let mk_port = |pname: String, rx: &mut *mut dpdk_sys::rte_ring, tx: &mut *mut dpdk_sys::rte_ring| -> Result<Port> {
            let c = CString::new(pname.clone()).map_err(|_| Error::invalid("rte_eth_from_rings", "NUL in name"))?;
            // SAFETY: rx/tx point to one live ring each (rings are never
            // freed); the name is a valid C string; numa node 0.
            let rc = unsafe { dpdk_sys::rte_eth_from_rings(c.as_ptr(), rx, 1, tx, 1, 0) };
            if rc < 0 { Err(Error::last("rte_eth_from_rings").on(pname)) } else { Ok(Port::new(rc as u16)) }
        };
        let a = mk_port(format!("{name}_a"), &mut ba, &mut ab)?;
        let b = mk_port(format!("{name}_b"), &mut ab, &mut ba)?;
        Ok((a, b))
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    /// The driver's name (`net_ring`, `net_pcap`, ...).
    pub fn driver_name(&self) -> Result<String> {
        self.info().map(|i| i.driver)
    }

    /// What the driver offers (`rte_eth_dev_info_get`).
    pub fn info(&self) -> Result<PortInfo> {
        // SAFETY: info is plain data that DPDK fills; the port id is valid.
        let mut info: dpdk_sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid port id and out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) };
        if rc != 0 {
            return Err(Error::code("rte_eth_dev_info_get", rc).on(format!("port {}", self.id)));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name is a static C string owned by the driver.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        Ok(PortInfo { driver, max_rx_queues: info.max_rx_queues, max_tx_queues: info.max_tx_queues })
    }

    /// Configures queues (default offloads: none), sets them up, optionally
    /// turns promiscuous mode on. Call before [`Port::start`].
    pub fn configure(&self, cfg: &PortConfig) -> Result<()> {
        let what = || format!("port {}", self.id);
        if cfg.rx_queues as usize > 64 || cfg.tx_queues as usize > 64 {
            return Err(Error::invalid("rte_eth_dev_configure", "at most 64 queues per direction"));
        }
        // SAFETY: rte_eth_conf is plain data; all-zero is DPDK's default config.
        let conf: dpdk_sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        // SAFETY: valid port id; conf lives for the call.
        let rc = unsafe { dpdk_sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf) };
        if rc != 0 {
            return Err(Error::code("rte_eth_dev_configure", rc).on(what()));
        }
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..cfg.rx_queues {
            // SAFETY: valid port and queue ids; NULL rxconf = driver defaults;
            // the mempool is live for the process.
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(self.id, q, cfg.rx_desc, socket, std::ptr::null(), cfg.mempool.as_ptr())
            };
            if rc != 0 {
                return Err(Error::code("rte_eth_rx_queue_setup", rc).on(format!("port {} queue {q}", self.id)));
            }
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: valid port and queue ids; NULL txconf = driver defaults.
            let rc = unsafe { dpdk_sys::rte_eth_tx_queue_setup(self.id, q, cfg.tx_desc, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(Error::code("rte_eth_tx_queue_setup", rc).on(format!("port {} queue {q}", self.id)));
            }
        }
        if cfg.promiscuous {
            // SAFETY: valid port id. Not every vdev supports it: -ENOTSUP is fine.
            let rc = unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
            if rc != 0 && rc != -95 {
                return Err(Error::code("rte_eth_promiscuous_enable", rc).on(what()));
            }
        }
        Ok(())
    }

    pub fn start(&self) -> Result<()> {
        // SAFETY: valid, configured port id.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        if rc != 0 { Err(Error::code("rte_eth_dev_start", rc).on(format!("port {}", self.id))) } else { Ok(()) }
    }

    pub fn stop(&self) -> Result<()> {
        // SAFETY: valid port id.
        let rc = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        if rc != 0 { Err(Error::code("rte_eth_dev_stop", rc).on(format!("port {}", self.id))) } else { Ok(()) }
    }

    /// Stops and closes the port, releasing the driver's resources (a
    /// `net_pcap` port flushes and closes its files here).
    pub fn close(self) -> Result<()> {
        let _ = self.stop();
        // SAFETY: valid port id; self is consumed so it is not used again.
        let rc = unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        if rc != 0 { Err(Error::code("rte_eth_dev_close", rc).on(format!("port {}", self.id))) } else { Ok(()) }
    }

    pub fn link(&self) -> Result<Link> {
        // SAFETY: plain data that DPDK fills.
        let mut l: dpdk_sys::rte_eth_link = unsafe { std::mem::zeroed() };
        // SAFETY: valid port id and out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        if rc != 0 {
            return Err(Error::code("rte_eth_link_get_nowait", rc).on(format!("port {}", self.id)));
        }
        Ok(Link { up: l.link_status() != 0, speed_mbps: l.link_speed })
    }

    pub fn stats(&self) -> Result<PortStats> {
        // SAFETY: plain data that DPDK fills.
        let mut s: dpdk_sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: valid port id and out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        if rc != 0 {
            return Err(Error::code("rte_eth_stats_get", rc).on(format!("port {}", self.id)));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    pub fn mac(&self) -> Result<[u8; 6]> {
        // SAFETY: plain data that DPDK fills.
        let mut a: dpdk_sys::rte_ether_addr = unsafe { std::mem::zeroed() };
        // SAFETY: valid port id and out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut a) };
        if rc != 0 {
            return Err(Error::code("rte_eth_macaddr_get", rc).on(format!("port {}", self.id)));
        }
        Ok(a.addr_bytes)
    }

    fn take(bits: &AtomicU64, q: u16, op: &'static str, id: u16) -> Result<()> {
        if q >= 64 {
            return Err(Error::invalid(op, format!("queue {q} out of range")));
        }
        let bit = 1u64 << q;
        if bits.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return Err(Error::invalid(op, format!("port {id} queue {q} is already taken")));
        }
        Ok(())
    }

    /// Takes RX queue `q` for the calling thread (once per queue).
    pub fn rx_queue(&self, q: u16) -> Result<RxQueue<'_>> {
        Port::take(&self.rx_taken, q, "rx_queue", self.id)?;
        Ok(RxQueue { port: self, queue: q, burst_pkts: MAX_BURST as u16, _not_send: PhantomData })
    }

    /// Takes TX queue `q` for the calling thread (once per queue).
    pub fn tx_queue(&self, q: u16) -> Result<TxQueue<'_>> {
        Port::take(&self.tx_taken, q, "tx_queue", self.id)?;
        Ok(TxQueue { port: self, queue: q, _not_send: PhantomData })
    }
}

/// A receive queue, polled only by the thread that took it.
#[derive(Debug)]
pub struct RxQueue<'p> {
    port: &'p Port,
    queue: u16,
    /// Most packets one receive asks the driver for.
    burst_pkts: u16,
    _not_send: PhantomData<*const ()>,
}

impl RxQueue<'_> {
    /// Receives into the free part of `burst`, at most [`RxQueue::burst_pkts`]
    /// packets; returns how many arrived.
    pub fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let (p, spare) = burst.spare_raw();
        let n = spare.min(usize::from(self.burst_pkts));
        // SAFETY: p points at n free slots of the burst; the queue is set up
        // and polled by this thread only (RxQueue is !Send and taken once).
        let got = unsafe { dpdk_sys::esprit_rte_eth_rx_burst(self.port.id, self.queue, p, n as u16) } as usize;
        burst.filled(got);
        got
    }

    /// Limit each receive to `n` packets (clamped to 1..=[`MAX_BURST`]; the
    /// default is `MAX_BURST`). Smaller bursts trade per-call overhead for
    /// latency and for a burst's packets fitting the L1 cache.
    pub fn set_burst_pkts(&mut self, n: u16) {
        self.burst_pkts = n.clamp(1, MAX_BURST as u16);
    }

    pub fn burst_pkts(&self) -> u16 {
        self.burst_pkts
    }
}

impl Drop for RxQueue<'_> {
    fn drop(&mut self) {
        self.port.rx_taken.fetch_and(!(1u64 << self.queue), Ordering::AcqRel);
    }
}

/// A transmit queue, used only by the thread that took it.
#[derive(Debug)]
pub struct TxQueue<'p> {
    port: &'p Port,
    queue: u16,
    _not_send: PhantomData<*const ()>,
}

impl TxQueue<'_> {
    /// Sends from the front of `burst`; what the driver took leaves the
    /// burst, what it refused stays (at the front) for the caller to retry or drop.
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        let n = burst.len();
        // SAFETY: the first n slots hold owned mbufs; the driver takes
        // ownership of the ones it reports sent; the queue is this thread's.
        let sent = unsafe { dpdk_sys::esprit_rte_eth_tx_burst(self.port.id, self.queue, burst.raw_pkts(), n as u16) } as usize;
        burst.consumed(sent);
        sent
    }
}

impl Drop for TxQueue<'_> {
    fn drop(&mut self) {
        self.port.tx_taken.fetch_and(!(1u64 << self.queue), Ordering::AcqRel);
    }
}
