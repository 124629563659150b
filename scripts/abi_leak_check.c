/* A create / use / free loop over the whole C ABI, run under valgrind by scripts/abi_leak_check.sh: every object
 * and every error message the library hands out is freed, so any byte valgrind reports lost is the library's.
 * Usage: abi_leak_check FIXTURES_DIR [ITERATIONS]   (exit 0 when every call returned what it should) */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lorakit.h"

static int failures = 0;
static char path_buf[4096];

static const char *fixture(const char *root, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", root, name);
    return path_buf;
}

/* Checks a call's status and frees its message (an error must carry one, success must not). */
static void expect(const char *what, LorakitStatus got, LorakitStatus want, char *err) {
    if (got != want) {
        fprintf(stderr, "%s: status %s, want %s: %s\n", what, lorakit_status_string(got),
                lorakit_status_string(want), err ? err : "(no message)");
        failures++;
    } else if ((want == LORAKIT_OK) != (err == NULL)) {
        fprintf(stderr, "%s: message slot %s on %s\n", what, err ? "set" : "empty", lorakit_status_string(got));
        failures++;
    }
    lorakit_string_free(err);
}

/* Runs CALL (which writes its message to `err`) and checks it; the status is read before the message slot. */
#define CHECK(what, call, want)                 \
    do {                                        \
        char *err = NULL;                       \
        LorakitStatus status_ = (call);         \
        expect((what), status_, (want), err);   \
    } while (0)

static LorakitModel *load(const char *dir, bool merged, const LorakitOptions *opts) {
    LorakitModel *model = NULL;
    CHECK(dir, lorakit_model_load(dir, merged, opts, &model, &err), LORAKIT_OK);
    return model;
}

static const LorakitText TEXTS[3] = {
    {"my card payment was declined", 28}, {"", 0}, {"Ana Lopez lives in Oslo", 23}};

static void classify_paths(const char *root, const LorakitOptions *opts) {
    LorakitModel *model = load(fixture(root, "tiny_bert_full"), true, opts);
    LorakitResult *res = NULL;
    CHECK("classify", lorakit_model_classify(model, NULL, TEXTS, 2, &res, &err), LORAKIT_OK);
    if (res && lorakit_result_num_texts(res) == 2 && lorakit_result_num_labels(res) > 0) {
        volatile float sink = lorakit_result_logits(res)[0] + lorakit_result_probabilities(res)[0];
        (void)sink;
        (void)lorakit_result_label(res, 0);
        (void)lorakit_result_unsafe(res);
    } else {
        fprintf(stderr, "classify: unexpected result shape\n");
        failures++;
    }
    /* The script's self-test leaks this result on purpose, to show that valgrind's verdict can fail. */
    if (!getenv("ABI_LEAK_CHECK_LEAK")) lorakit_result_free(res);

    LorakitEncoding *enc = NULL;
    CHECK("tokenize", lorakit_model_tokenize(model, NULL, TEXTS, 2, &enc, &err), LORAKIT_OK);
    lorakit_encoding_free(enc);

    LorakitTaskInfo *info = NULL;
    CHECK("task_info", lorakit_model_task_info(model, NULL, &info, &err), LORAKIT_OK);
    lorakit_task_info_free(info);
    LorakitStrings *names = NULL;
    CHECK("adapters", lorakit_model_adapters(model, &names, &err), LORAKIT_OK);
    lorakit_strings_free(names);

    /* Error paths: each must leave *out NULL and hand out a message. */
    res = NULL;
    CHECK("classify NULL texts", lorakit_model_classify(model, NULL, NULL, 2, &res, &err), LORAKIT_INPUT);
    CHECK("classify empty batch", lorakit_model_classify(model, NULL, TEXTS, 0, &res, &err), LORAKIT_INPUT);
    CHECK("classify NULL out", lorakit_model_classify(model, NULL, TEXTS, 1, NULL, &err), LORAKIT_INPUT);
    CHECK("classify NULL model", lorakit_model_classify(NULL, NULL, TEXTS, 1, &res, &err), LORAKIT_INPUT);
    CHECK("classify unknown adapter", lorakit_model_classify(model, "nope", TEXTS, 1, &res, &err), LORAKIT_INPUT);
    CHECK("oversized batch (max_batch 2)", lorakit_model_classify(model, NULL, TEXTS, 3, &res, &err), LORAKIT_INPUT);
    const LorakitText bad_utf8[1] = {{"\xff\xfe", 2}};
    CHECK("invalid UTF-8", lorakit_model_classify(model, NULL, bad_utf8, 1, &res, &err), LORAKIT_INPUT);
    LorakitEmbeddings *emb = NULL;
    CHECK("embed on a classifier", lorakit_model_embed(model, NULL, TEXTS, 1, &emb, &err), LORAKIT_INPUT);
    CHECK("add_adapter to merged", lorakit_model_add_adapter(model, "a", fixture(root, "tiny_bert_lora_a"), &err), LORAKIT_INPUT);
    if (res || emb) {
        fprintf(stderr, "a failed call handed out an object\n");
        failures++;
    }
    /* Without an error slot the message is dropped inside the library. */
    if (lorakit_model_classify(model, NULL, NULL, 1, &res, NULL) != LORAKIT_INPUT) failures++;
    lorakit_model_free(model);
}

static void task_paths(const char *root, const LorakitOptions *opts) {
    LorakitModel *tokens = load(fixture(root, "tiny_bert_token_lora"), true, opts);
    LorakitEntities *ents = NULL;
    CHECK("extract_entities", lorakit_model_extract_entities(tokens, NULL, TEXTS, 2, &ents, &err), LORAKIT_OK);
    (void)lorakit_entities_get(ents, 1);
    (void)lorakit_entities_token_logits(ents, 0);
    lorakit_entities_free(ents);
    /* The tiny random model may find no entity: mask a span of our own. */
    LorakitEntity span = {.entity_type = "PER", .start = 0, .end = 9};
    LorakitBytes *masked = NULL;
    CHECK("mask_entities", lorakit_mask_entities(TEXTS[2], &span, 1, &masked, &err), LORAKIT_OK);
    if (!masked || strncmp(lorakit_bytes_data(masked), "[PER] lives", 11) != 0) failures++;
    lorakit_bytes_free(masked);
    LorakitResult *res = NULL;
    CHECK("classify on a token model", lorakit_model_classify(tokens, NULL, TEXTS, 1, &res, &err), LORAKIT_INPUT);
    lorakit_model_free(tokens);

    LorakitModel *embed = load(fixture(root, "tiny_bert_embed_lora"), false, opts);
    LorakitEmbeddings *emb = NULL;
    CHECK("embed", lorakit_model_embed(embed, NULL, TEXTS, 2, &emb, &err), LORAKIT_OK);
    lorakit_embeddings_free(emb);
    lorakit_model_free(embed);
}

static void generative_paths(const char *root, const LorakitOptions *opts) {
    LorakitModel *gen = load(fixture(root, "tiny_qwen3_generative"), true, opts);
    LorakitResult *res = NULL;
    CHECK("classify generative", lorakit_model_classify(gen, NULL, TEXTS, 2, &res, &err), LORAKIT_OK);
    lorakit_result_free(res);
    const LorakitText docs[2] = {{"the goal came late", 18}, {"rain all day", 12}};
    const LorakitText shot_labels[2] = {{"sport", 5}, {"weather", 7}};
    res = NULL;
    CHECK("classify_fewshot", lorakit_model_classify_fewshot(gen, NULL, TEXTS[0], docs, shot_labels, 2, shot_labels, 2, &res, &err), LORAKIT_OK);
    if (res && lorakit_result_num_labels(res) == 2) {
        (void)lorakit_result_label(res, 1);
    } else {
        fprintf(stderr, "classify_fewshot: unexpected result shape\n");
        failures++;
    }
    lorakit_result_free(res);
    res = NULL;
    CHECK("classify_fewshot NULL examples", lorakit_model_classify_fewshot(gen, NULL, TEXTS[0], NULL, NULL, 1, NULL, 0, &res, &err), LORAKIT_INPUT);
    LorakitEmbeddings *logits = NULL;
    CHECK("next_token_logits", lorakit_model_next_token_logits(gen, NULL, TEXTS, 2, &logits, &err), LORAKIT_OK);
    lorakit_embeddings_free(logits);
    lorakit_model_free(gen);
}

static void base_paths(const char *root, const LorakitOptions *opts) {
    LorakitModel *base = NULL;
    CHECK("load_base", lorakit_model_load_base(fixture(root, "tiny_bert_base"), opts, &base, &err), LORAKIT_OK);
    CHECK("add a", lorakit_model_add_adapter(base, "a", fixture(root, "tiny_bert_lora_a"), &err), LORAKIT_OK);
    CHECK("add b", lorakit_model_add_adapter(base, "b", fixture(root, "tiny_bert_lora_b"), &err), LORAKIT_OK);
    CHECK("add a twice", lorakit_model_add_adapter(base, "a", fixture(root, "tiny_bert_lora_b"), &err), LORAKIT_INPUT);
    LorakitResult *res = NULL;
    CHECK("classify without a name", lorakit_model_classify(base, NULL, TEXTS, 1, &res, &err), LORAKIT_INPUT);
    CHECK("classify b", lorakit_model_classify(base, "b", TEXTS, 2, &res, &err), LORAKIT_OK);
    lorakit_result_free(res);
    bool removed = false;
    CHECK("remove a", lorakit_model_remove_adapter(base, "a", &removed, &err), LORAKIT_OK);
    if (!removed) failures++;
    lorakit_model_free(base);

    char *resolved = NULL;
    CHECK("resolve_base", lorakit_resolve_base(fixture(root, "tiny_bert_lora_a"), &resolved, &err), LORAKIT_OK);
    lorakit_string_free(resolved);
    LorakitStrings *archs = NULL;
    CHECK("architectures", lorakit_architectures(&archs, &err), LORAKIT_OK);
    lorakit_strings_free(archs);
    CHECK("aliases of an unknown type", lorakit_architecture_aliases("gpt9", &archs, &err), LORAKIT_UNSUPPORTED);
}

static void load_errors(const char *root) {
    LorakitModel *model = NULL;
    CHECK("load a missing directory", lorakit_model_load("/nonexistent/lorakit", true, NULL, &model, &err), LORAKIT_IO);
    CHECK("load NULL dir", lorakit_model_load(NULL, true, NULL, &model, &err), LORAKIT_INPUT);
    CHECK("load NULL out", lorakit_model_load(fixture(root, "tiny_bert_full"), true, NULL, NULL, &err), LORAKIT_INPUT);
    CHECK("load a malformed model", lorakit_model_load(fixture(root, "tiny_bert_base"), true, NULL, &model, &err), LORAKIT_IO);
    LorakitOptions bad_device = {.device = "cuda:zero"};
    CHECK("bad device", lorakit_model_load(fixture(root, "tiny_bert_full"), true, &bad_device, &model, &err), LORAKIT_INPUT);
    if (model) {
        fprintf(stderr, "a failed load handed out a model\n");
        failures++;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR [ITERATIONS]\n", argv[0]);
        return 2;
    }
    int iterations = argc > 2 ? atoi(argv[2]) : 3;
    LorakitOptions opts = {.threads = 1, .max_batch = 2};
    for (int i = 0; i < iterations; i++) {
        load_errors(argv[1]);
        classify_paths(argv[1], &opts);
        task_paths(argv[1], &opts);
        generative_paths(argv[1], &opts);
        base_paths(argv[1], &opts);
    }
    printf("%d iterations over lorakit %s: %d unexpected results\n", iterations, lorakit_version(), failures);
    return failures == 0 ? 0 : 1;
}
