"""The judge base class: the per-latent JSONL cache, resuming, and the batch loop every backend shares."""
import hashlib
import json
import os
from logging import getLogger

from recbole_saerec.data.text import BadLines, iter_lines
from recbole_saerec.intents.judge.verdicts import VERDICTS


def digest(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True, ensure_ascii=True).encode("utf-8")).hexdigest()[:20]


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True)


# ----------------------------------------------------------------------------- base class

class Judge:
    """Base judge: caching, resuming and the batch loop. Backends implement ``_judge_batch``.

    ``judge_many(latent_words, cache_path=None, progress=True)`` returns one
    dict per latent, in input order: ``{"summary": str, "verdict": str}``
    (verdict in ``VERDICTS``), plus ``"raw"`` (the LM's answer) for LM
    backends and diagnostic scores for the offline one.
    """

    backend = "base"
    model = ""
    # text that is not valid UTF-8 in the verdict cache or a server's answer (data/text.py); make_judge
    # sets the config's on_bad_line, a judge built by hand is strict
    on_bad_line = "error"

    def __init__(self):
        self.n_calls = 0  # backend calls made (LM requests / offline batches); tests count them

    # what a verdict depends on besides the words
    def cache_spec(self):
        return {"backend": self.backend, "model": self.model}

    def cache_key(self, words):
        return digest({"words": [str(w) for w in words], **self.cache_spec()})

    @property
    def name(self):
        """Short identification for fingerprints and catalogues: ``backend:model``."""
        return f"{self.backend}:{self.model}" if self.model else self.backend

    def _judge_batch(self, latent_words, on_result):
        """Judge each word list; call ``on_result(position, result_dict)`` as each one is done."""
        raise NotImplementedError

    def _load_cache(self, cache_path):
        cache = {}
        if not cache_path or not os.path.isfile(cache_path):
            return cache
        bad = BadLines(self.on_bad_line)
        for _, line in iter_lines(cache_path, bad):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by an interruption: judged again
                continue
            if isinstance(rec, dict) and "key" in rec and rec.get("verdict") in VERDICTS \
                    and not rec.get("unparsed"):  # written by older versions: ask again
                cache[rec["key"]] = rec
        bad.report("judge verdict cache (those latents are judged again)")
        return cache

    def judge_many(self, latent_words, cache_path=None, progress=True):
        latent_words = [[str(w) for w in words] for words in latent_words]
        keys = [self.cache_key(words) for words in latent_words]
        cache = self._load_cache(cache_path)
        todo, seen = [], set()
        for i, key in enumerate(keys):
            if key not in cache and key not in seen:
                todo.append(i)
                seen.add(key)
        log = getLogger()
        if cache_path and len(todo) < len(set(keys)):
            log.info(f"[judge] {len(set(keys)) - len(todo)} latents cached in {cache_path}, {len(todo)} to judge")
        if todo:
            fh = None
            if cache_path:
                os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
                fh = open(cache_path, "a", encoding="utf-8")
            bar = _progress(None, len(todo), f"judge ({self.name})", progress) if progress else None
            try:
                def on_result(pos, result):
                    i = todo[pos]
                    verdict = result.get("verdict")
                    if verdict not in VERDICTS:
                        raise ValueError(f"backend returned verdict {verdict!r}, not one of {VERDICTS}")
                    rec = {"key": keys[i], "words": latent_words[i], **result}
                    cache[keys[i]] = rec
                    # only a real answer is remembered: an unparsed one is asked again next run
                    if fh is not None and not result.get("unparsed"):
                        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                        fh.flush()
                    if bar is not None and hasattr(bar, "update"):
                        bar.update(1)

                self._judge_batch([latent_words[i] for i in todo], on_result)
            finally:
                if fh is not None:
                    fh.close()
                if bar is not None and hasattr(bar, "close"):
                    bar.close()
        out = []
        for key in keys:
            rec = dict(cache[key])
            rec.pop("key", None)
            rec.pop("words", None)
            out.append(rec)
        return out


# ----------------------------------------------------------------------------- LM backends
