"""The original system's way of serving the peers, for `make bench` to measure beside `pic serve`:
Flask, a session check, and the config JSON read from disk on every request."""

import json
import os
import sys

from flask import Flask, abort, jsonify, session

app = Flask(__name__)
app.secret_key = b"bench-only-secret"
CONFIG = os.environ["PIC_BENCH_CONFIG"]


@app.post("/login")
def login():
    session["user"] = "alice"
    return jsonify(ok=True)


@app.get("/api/peers")
def peers():
    if "user" not in session:
        abort(401)
    with open(CONFIG, encoding="utf-8") as f:
        config = json.load(f)
    return jsonify(config["wireguard"]["peers"])


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
