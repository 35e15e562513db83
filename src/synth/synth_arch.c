/* synth_arch.c — the architecture table of `qvlm synth`: one row per real checkpoint, holding
 * the config.json values of its vision tower, projector and language model (synth.h), and the
 * token ids of the tokenizers qvlm ships in their place.
 *
 * Values: MODELS.md §1.1 (Qwen2-VL), §1.10 (Qwen2.5-VL), §2.1 (LLaVA-OneVision), §3.1
 * (InternVL2/3), fixtures README §2; the published config.json files where MODELS.md is silent
 * (InternVL2-1B/2B/26B LLM and vision configs, InternVL3's rope_scaling, Qwen2-7B).
 *
 * params_hub is the parameter count of the published checkpoint. Counts read from the hub's
 * safetensors metadata: InternVL2-8B 8,075,365,376 (the issue), InternVL2.5-2B 2,205,754,368 and
 * InternVL2.5-26B 25,514,186,112 (same architectures and vocabularies as InternVL2-2B/26B),
 * Qwen2-7B 7,615,616,512, Qwen2-VL-2B 2,208,985,600, Qwen2-VL-7B 8,291,375,616, Qwen2.5-VL-7B
 * 8,292,166,656. Derived from the published configs (no metadata at hand; the hub pages agree to
 * three digits): InternVL2-1B 938,158,976 (InternVL2.5-1B's 938,193,024 minus 2 x 19 x 896 for
 * its 19 fewer vocabulary rows), InternVL3-2B 2,088,957,440 (lm_head stored: the hub page's
 * 2.09B), InternVL3-8B 7,944,373,760, LLaVA-OneVision-7B 8,030,348,832 (vocab 152064, 26 SigLIP
 * layers stored). */
#include <string.h>

#include "synth.h"


/* InternViT-300M-448px (V2_5 has the same shapes) and InternViT-6B-448px-V1-5 (45 of 48 blocks) */
#define VIT_300M {1024, 24, 16, 4096, 448, 14, false, false, true}
#define VIT_6B {3200, 45, 25, 12800, 448, 14, true, true, false}
/* Qwen2-VL / Qwen2.5-VL ViT (image size unused: native resolution) */
#define VIT_QWEN2_VL {1280, 32, 16, 5120, 0, 14, false, false, true}
#define VIT_QWEN2_5_VL {1280, 32, 16, 3420, 0, 14, true, false, true}
/* google/siglip-so400m-patch14-384, the 26 layers LLaVA-OneVision keeps and stores */
#define VIT_SIGLIP {1152, 26, 16, 4304, 384, 14, false, false, true}

static const qv_synth_arch k_archs[] = {
    {"internvl2-1b", "OpenGVLab/InternVL2-1B", QV_SYNTH_INTERNVL, "internvl2-qwen2", "Hermes-2", 938158976, VIT_300M,
     {QV_DECODER_QWEN2, 896, 24, 14, 2, 64, 4864, 151655, 32768, false, "1e-06", "1000000.0", NULL,
      "Qwen/Qwen2-0.5B-Instruct"}},
    {"internvl2-2b", "OpenGVLab/InternVL2-2B", QV_SYNTH_INTERNVL, "internlm2", "internlm2-chat", 2205754368, VIT_300M,
     {QV_DECODER_INTERNLM2, 2048, 24, 16, 8, 128, 8192, 92553, 32768, false, "1e-05", "1000000", "2.0",
      "internlm/internlm2-chat-1_8b"}},
    {"internvl2-8b", "OpenGVLab/InternVL2-8B", QV_SYNTH_INTERNVL, "internlm2", "internlm2-chat", 8075365376, VIT_300M,
     {QV_DECODER_INTERNLM2, 4096, 32, 32, 8, 128, 14336, 92553, 32768, false, "1e-05", "1000000", "2.0",
      "internlm/internlm2_5-7b-chat"}},
    {"internvl2-26b", "OpenGVLab/InternVL2-26B", QV_SYNTH_INTERNVL, "internlm2", "internlm2-chat", 25514186112, VIT_6B,
     {QV_DECODER_INTERNLM2, 6144, 48, 48, 8, 128, 16384, 92553, 32768, false, "1e-05", "1000000", "3.0",
      "internlm/internlm2-chat-20b"}},
    {"internvl3-2b", "OpenGVLab/InternVL3-2B", QV_SYNTH_INTERNVL, "internvl3", "internvl2_5", 2088957440, VIT_300M,
     {QV_DECODER_QWEN2, 1536, 28, 12, 2, 128, 8960, 151674, 32768, false, "1e-06", "1000000.0", "2.0",
      "Qwen/Qwen2.5-1.5B-Instruct"}},
    {"internvl3-8b", "OpenGVLab/InternVL3-8B", QV_SYNTH_INTERNVL, "internvl3", "internvl2_5", 7944373760, VIT_300M,
     {QV_DECODER_QWEN2, 3584, 28, 28, 4, 128, 18944, 151674, 32768, false, "1e-06", "1000000.0", "2.0",
      "Qwen/Qwen2.5-7B-Instruct"}},
    {"qwen2-7b", "Qwen/Qwen2-7B-Instruct", QV_SYNTH_TEXT, "qwen2", NULL, 7615616512, {0},
     {QV_DECODER_QWEN2, 3584, 28, 28, 4, 128, 18944, 152064, 32768, false, "1e-06", "1000000.0", NULL, NULL}},
    {"qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", QV_SYNTH_QWEN2_VL, "qwen2-vl", NULL, 2208985600, VIT_QWEN2_VL,
     {QV_DECODER_QWEN2, 1536, 28, 12, 2, 128, 8960, 151936, 32768, true, "1e-06", "1000000.0", NULL, NULL}},
    {"qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct", QV_SYNTH_QWEN2_VL, "qwen2-vl", NULL, 8291375616, VIT_QWEN2_VL,
     {QV_DECODER_QWEN2, 3584, 28, 28, 4, 128, 18944, 152064, 32768, false, "1e-06", "1000000.0", NULL, NULL}},
    {"qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", QV_SYNTH_QWEN2_5_VL, "qwen2-vl", NULL, 8292166656, VIT_QWEN2_5_VL,
     {QV_DECODER_QWEN2, 3584, 28, 28, 4, 128, 18944, 152064, 128000, false, "1e-06", "1000000.0", NULL, NULL}},
    {"llava-onevision-qwen2-7b", "lmms-lab/llava-onevision-qwen2-7b-ov", QV_SYNTH_LLAVA_OV, "llava-ov", NULL,
     8030348832, VIT_SIGLIP,
     {QV_DECODER_QWEN2, 3584, 28, 28, 4, 128, 18944, 152064, 32768, false, "1e-06", "1000000.0", NULL, NULL}},
};

size_t qv_synth_arch_count(void) { return QV_ARRAY_LEN(k_archs); }

const qv_synth_arch *qv_synth_arch_at(size_t i) { return i < QV_ARRAY_LEN(k_archs) ? &k_archs[i] : NULL; }

const qv_synth_arch *qv_synth_arch_find(const char *name)
{
    for (size_t i = 0; i < QV_ARRAY_LEN(k_archs); i++)
        if (!strcmp(k_archs[i].name, name))
            return &k_archs[i];
    return NULL;
}

/* Ids in the fixture tokenizers (fixtures README §3, §13.1, §14.1, §15.1); the test checks them
 * against the embedded tokenizer files. */
static const qv_synth_tok_ids k_toks[] = {
    /*  family             n     bos   eos   pad   vs    ve    vpad  img   vid   <img> </img> ctx */
    {"internlm2", 2015, 1, 2, 2, -1, -1, -1, -1, -1, 2006, 2007, 2008},
    {"internvl2-qwen2", 2012, 2000, 2002, -1, -1, -1, -1, -1, -1, 2003, 2004, 2005},
    {"internvl3", 2031, 2000, 2002, 2000, 2009, 2010, 2011, 2012, 2013, 2022, 2023, 2024},
    {"qwen2", 2003, 2000, 2002, 2000, -1, -1, -1, -1, -1, -1, -1, -1},
    {"qwen2-vl", 2014, 2000, 2002, 2000, 2009, 2010, 2011, 2012, 2013, -1, -1, -1},
    {"llava-ov", 2003, 2000, 2002, 2000, -1, -1, -1, -1, -1, -1, -1, -1},
};

const qv_synth_tok_ids *qv_synth_tok_find(const char *family)
{
    for (size_t i = 0; i < QV_ARRAY_LEN(k_toks); i++)
        if (!strcmp(k_toks[i].family, family))
            return &k_toks[i];
    return NULL;
}
