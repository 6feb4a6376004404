/* Real symbols for DPDK's static-inline functions and macros: one-line
 * forwarders, nothing else (STYLE.md, FFI). */
#ifndef ESPRIT_SHIM_H
#define ESPRIT_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_cryptodev.h>

int esprit_rte_errno(void);
unsigned esprit_rte_lcore_id(void);

uint16_t esprit_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t esprit_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *esprit_rte_pktmbuf_alloc(struct rte_mempool *mp);
int esprit_rte_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned count);
void esprit_rte_pktmbuf_free(struct rte_mbuf *m);
char *esprit_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *esprit_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *esprit_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int esprit_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
void *esprit_rte_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t esprit_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t esprit_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
unsigned esprit_rte_mempool_avail_count(const struct rte_mempool *mp);

unsigned esprit_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space);
unsigned esprit_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available);

uint16_t esprit_rte_cryptodev_enqueue_burst(uint8_t dev_id, uint16_t qp_id, struct rte_crypto_op **ops, uint16_t nb_ops);
uint16_t esprit_rte_cryptodev_dequeue_burst(uint8_t dev_id, uint16_t qp_id, struct rte_crypto_op **ops, uint16_t nb_ops);
struct rte_crypto_op *esprit_rte_crypto_op_alloc(struct rte_mempool *mempool, enum rte_crypto_op_type type);
unsigned esprit_rte_crypto_op_bulk_alloc(struct rte_mempool *mempool, enum rte_crypto_op_type type, struct rte_crypto_op **ops, uint16_t nb_ops);
void esprit_rte_crypto_op_free(struct rte_crypto_op *op);
int esprit_rte_crypto_op_attach_sym_session(struct rte_crypto_op *op, void *sess);

/* intel-ipsec-mb's direct API (imb.c): opaque manager and keys; AES-GCM
 * (16, 24 or 32-byte keys) sealing, ChaCha20-Poly1305 both ways. The
 * *_free functions wipe the key before freeing it. */
void *esprit_imb_mgr_new(void);
void *esprit_imb_gcm_key_new(void *mgr, const uint8_t *key, uint32_t key_len);
void esprit_imb_gcm_key_free(void *kd);
void esprit_imb_gcm_enc_vec(void *mgr, const void *kd, uint32_t key_len, uint32_t n,
			    const struct rte_crypto_vec *text, const struct rte_crypto_va_iova_ptr *tag,
			    const uint8_t *iv16, const uint8_t *aad16, uint64_t aad_len);
void *esprit_imb_chacha_key_new(const uint8_t *key);
void esprit_imb_chacha_key_free(void *k);
void esprit_imb_chacha_seal(void *mgr, const void *key, uint8_t *text, uint64_t len, uint8_t *tag,
			    const uint8_t *iv12, const uint8_t *aad, uint64_t aad_len);
int esprit_imb_chacha_open(void *mgr, const void *key, uint8_t *text, uint64_t len, const uint8_t *tag,
			   const uint8_t *iv12, const uint8_t *aad, uint64_t aad_len);

#endif
