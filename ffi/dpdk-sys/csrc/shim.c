/* One-line forwarders to DPDK's static-inline functions (see shim.h). */
#include "shim.h"
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_memory.h>

int esprit_rte_errno(void) { return rte_errno; }
unsigned esprit_rte_lcore_id(void) { return rte_lcore_id(); }

uint16_t esprit_rte_eth_rx_burst(uint16_t p, uint16_t q, struct rte_mbuf **b, uint16_t n) { return rte_eth_rx_burst(p, q, b, n); }
uint16_t esprit_rte_eth_tx_burst(uint16_t p, uint16_t q, struct rte_mbuf **b, uint16_t n) { return rte_eth_tx_burst(p, q, b, n); }

struct rte_mbuf *esprit_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
int esprit_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **b, unsigned n) { return rte_pktmbuf_alloc_bulk(mp, b, n); }
void esprit_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
char *esprit_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *esprit_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *esprit_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int esprit_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
void *esprit_rte_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t esprit_rte_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t esprit_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
unsigned esprit_rte_mempool_avail_count(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }

unsigned esprit_rte_ring_enqueue_burst(struct rte_ring *r, void *const *o, unsigned n, unsigned *f) { return rte_ring_enqueue_burst(r, o, n, f); }
unsigned esprit_rte_ring_dequeue_burst(struct rte_ring *r, void **o, unsigned n, unsigned *a) { return rte_ring_dequeue_burst(r, o, n, a); }

uint16_t esprit_rte_cryptodev_enqueue_burst(uint8_t d, uint16_t q, struct rte_crypto_op **o, uint16_t n) { return rte_cryptodev_enqueue_burst(d, q, o, n); }
uint16_t esprit_rte_cryptodev_dequeue_burst(uint8_t d, uint16_t q, struct rte_crypto_op **o, uint16_t n) { return rte_cryptodev_dequeue_burst(d, q, o, n); }
struct rte_crypto_op *esprit_rte_crypto_op_alloc(struct rte_mempool *mp, enum rte_crypto_op_type t) { return rte_crypto_op_alloc(mp, t); }
unsigned esprit_rte_crypto_op_bulk_alloc(struct rte_mempool *mp, enum rte_crypto_op_type t, struct rte_crypto_op **o, uint16_t n) { return rte_crypto_op_bulk_alloc(mp, t, o, n); }
void esprit_rte_crypto_op_free(struct rte_crypto_op *op) { rte_crypto_op_free(op); }
int esprit_rte_crypto_op_attach_sym_session(struct rte_crypto_op *op, void *s) { return rte_crypto_op_attach_sym_session(op, s); }
