"""A Python function for the program tests: an init that imports a realistic
set of modules, then calls served through thaw_program."""
import datetime
import decimal
import hashlib
import json
import os
import random
import re

import thaw_program

START = datetime.datetime(2024, 1, 1)
WORD = re.compile(r"\w+")
print("python init done", flush=True)


def handle(data):
    words = WORD.findall(data.decode())
    return json.dumps({"words": len(words),
                       "sum": str(sum(decimal.Decimal(w) for w in words
                                      if w.isdigit())),
                       "sha": hashlib.sha256(data).hexdigest()[:16]})


def fail(data):
    raise ValueError("bad input: %r" % data)


thaw_program.serve({
    "handle": handle,
    "fail": fail,
    "urandom": lambda data: os.urandom(8).hex(),
    "random": lambda data: "%.12f" % random.random(),
})
