"""The SnapStart case: a Python function whose init imports a realistic set
of modules, numpy among them (what a Lambda handler's cold start spends its
time on), served through thaw_program. thaw snapshots it after the imports;
every restore starts with them done. numpy runs with one BLAS thread
(OPENBLAS_NUM_THREADS=1): thaw guests have no threads."""
import datetime
import decimal
import email.message
import email.utils
import hashlib
import http.client
import json
import re
import sqlite3

import numpy as np

import thaw_program

DB = sqlite3.connect(":memory:")
DB.execute("create table orders (id integer primary key, amount text)")
DB.executemany("insert into orders (amount) values (?)",
               [(str(decimal.Decimal(i) / 4),) for i in range(1000)])
WORD = re.compile(r"\w+")
PRICES = np.linspace(0.25, 250.0, 1000)
print("init: modules imported, database ready", flush=True)


def handle(data):
    """Totals an order list ("1 2 3") and answers as an e-mail-ish JSON."""
    ids = [int(w) for w in WORD.findall(data.decode()) if w.isdigit()]
    total = sum((decimal.Decimal(row[0]) for row in DB.execute(
        "select amount from orders where id in (%s)" % ",".join("?" * len(ids)),
        ids)), decimal.Decimal(0)) if ids else decimal.Decimal(0)
    message = email.message.EmailMessage()
    message["Date"] = email.utils.format_datetime(
        datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc))
    mean = float(np.mean(PRICES[[i % 1000 for i in ids]])) if ids else 0.0
    return json.dumps({"orders": len(ids), "total": str(total),
                       "mean_price": round(mean, 4),
                       "status": http.client.responses[200],
                       "digest": hashlib.sha256(data).hexdigest()[:12],
                       "date": message["Date"]})


thaw_program.serve({"handle": handle})
