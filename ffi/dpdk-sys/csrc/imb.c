/* intel-ipsec-mb's direct AES-GCM API, for the outbound path: one call per
 * packet (IMB_AESxxx_GCM_ENC: init, update and finalize in one routine),
 * where DPDK's CPU-crypto wrapper calls init, update and finalize apart. */
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
	case 32: IMB_AES256_GCM_PRE(m, key, kd); break;
	default: free(kd); return NULL;
	}
	return kd;
}

void esprit_imb_gcm_key_free(void *kd)
{
	memset(kd, 0, sizeof(struct gcm_key_data));
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
		else
			IMB_AES256_GCM_ENC(m, kd, &ctx, p, p, text[i].len, iv16 + 16 * i, aad16 + 16 * i, aad_len, tag[i].va, 16);
	}
}
