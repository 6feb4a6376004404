/* intel-ipsec-mb's direct API, beside DPDK's CPU-crypto wrapper:
 *  - AES-GCM (128/192/256) for the outbound path: one call per packet
 *    (IMB_AESxxx_GCM_ENC: init, update and finalize in one routine), where
 *    DPDK's wrapper calls init, update and finalize apart;
 *  - ChaCha20-Poly1305 both ways: DPDK 22.11's chacha20_poly1305 PMD
 *    advertises RTE_CRYPTODEV_FF_SYM_CPU_CRYPTO but sets no sym_cpu_process,
 *    so rte_cryptodev_sym_cpu_crypto_process fails every job (ENOTSUP).
 * Key material (expanded keys, the per-call contexts, computed tags) is
 * wiped with explicit_bzero, which the compiler may not drop as a dead
 * store the way it may drop a memset before free. */
#include "shim.h"
#include <stdlib.h>
#include <string.h>
#include <intel-ipsec-mb.h>

void *esprit_imb_mgr_new(void)
{
	IMB_MGR *m = alloc_mb_mgr(0);
	if (m == NULL)
		return NULL;
	init_mb_mgr_auto(m, NULL);
	if (imb_get_errno(m) != 0) {
		free_mb_mgr(m);
		return NULL;
	}
	return m;
}

void *esprit_imb_gcm_key_new(void *mgr, const uint8_t *key, uint32_t key_len)
{
	IMB_MGR *m = mgr;
	size_t sz = (sizeof(struct gcm_key_data) + 63) & ~(size_t)63;
	struct gcm_key_data *kd = aligned_alloc(64, sz);
	if (kd == NULL)
		return NULL;
	switch (key_len) {
	case 16: IMB_AES128_GCM_PRE(m, key, kd); break;
	case 24: IMB_AES192_GCM_PRE(m, key, kd); break;
	case 32: IMB_AES256_GCM_PRE(m, key, kd); break;
	default: free(kd); return NULL;
	}
	return kd;
}

void esprit_imb_gcm_key_free(void *kd)
{
	explicit_bzero(kd, sizeof(struct gcm_key_data));
	free(kd);
}

void esprit_imb_gcm_enc_vec(void *mgr, const void *kd, uint32_t key_len, uint32_t n,
			    const struct rte_crypto_vec *text, const struct rte_crypto_va_iova_ptr *tag,
			    const uint8_t *iv16, const uint8_t *aad16, uint64_t aad_len)
{
	IMB_MGR *m = mgr;
	struct gcm_context_data ctx;
	uint32_t i;
	for (i = 0; i < n; i++) {
		uint8_t *p = text[i].base;
		if (key_len == 16)
			IMB_AES128_GCM_ENC(m, kd, &ctx, p, p, text[i].len, iv16 + 16 * i, aad16 + 16 * i, aad_len, tag[i].va, 16);
		else if (key_len == 24)
			IMB_AES192_GCM_ENC(m, kd, &ctx, p, p, text[i].len, iv16 + 16 * i, aad16 + 16 * i, aad_len, tag[i].va, 16);
		else
			IMB_AES256_GCM_ENC(m, kd, &ctx, p, p, text[i].len, iv16 + 16 * i, aad16 + 16 * i, aad_len, tag[i].va, 16);
	}
	/* The context holds the last partial block's keystream. */
	explicit_bzero(&ctx, sizeof(ctx));
}

/* ChaCha20-Poly1305 (RFC 8439): the library reads the 32-byte key itself. */
#define CHACHA_KEY_ALLOC 64

void *esprit_imb_chacha_key_new(const uint8_t *key)
{
	uint8_t *k = aligned_alloc(64, CHACHA_KEY_ALLOC);
	if (k == NULL)
		return NULL;
	memset(k, 0, CHACHA_KEY_ALLOC);
	memcpy(k, key, 32);
	return k;
}

void esprit_imb_chacha_key_free(void *k)
{
	explicit_bzero(k, CHACHA_KEY_ALLOC);
	free(k);
}

void esprit_imb_chacha_seal(void *mgr, const void *key, uint8_t *text, uint64_t len, uint8_t *tag,
			    const uint8_t *iv12, const uint8_t *aad, uint64_t aad_len)
{
	IMB_MGR *m = mgr;
	struct chacha20_poly1305_context_data ctx;
	IMB_CHACHA20_POLY1305_INIT(m, key, &ctx, iv12, aad, aad_len);
	IMB_CHACHA20_POLY1305_ENC_UPDATE(m, key, &ctx, text, text, len);
	IMB_CHACHA20_POLY1305_ENC_FINALIZE(m, &ctx, tag, 16);
	/* The context holds the one-time Poly1305 key and keystream. */
	explicit_bzero(&ctx, sizeof(ctx));
}

int esprit_imb_chacha_open(void *mgr, const void *key, uint8_t *text, uint64_t len, const uint8_t *tag,
			   const uint8_t *iv12, const uint8_t *aad, uint64_t aad_len)
{
	IMB_MGR *m = mgr;
	struct chacha20_poly1305_context_data ctx;
	uint8_t calc[16];
	uint8_t diff = 0;
	int i;
	IMB_CHACHA20_POLY1305_INIT(m, key, &ctx, iv12, aad, aad_len);
	IMB_CHACHA20_POLY1305_DEC_UPDATE(m, key, &ctx, text, text, len);
	IMB_CHACHA20_POLY1305_DEC_FINALIZE(m, &ctx, calc, 16);
	/* Constant time: every octet of the tag is compared. */
	for (i = 0; i < 16; i++)
		diff |= calc[i] ^ tag[i];
	explicit_bzero(&ctx, sizeof(ctx));
	explicit_bzero(calc, sizeof(calc));
	return diff == 0;
}
