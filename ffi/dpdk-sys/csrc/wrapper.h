/* The DPDK headers esprit binds. rte_config.h first, as pkg-config's cflags say. */
#include <rte_config.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_dev.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_cryptodev.h>
#include <rte_crypto.h>
#include <rte_crypto_sym.h>
#include "shim.h"
