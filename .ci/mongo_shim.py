#!/usr/bin/python3
"""A MongoDB *wire-compatible fake* for CI: mockupdb speaks the wire protocol
(OP_MSG), mongomock executes the commands in memory.

Why: no MongoDB server can be installed here (Debian dropped it, the npm/PyPI
"in-memory MongoDB" packages download a mongod at run time, which this
network refuses). This fake lets the conformance suite drive the real Rust
driver and the real MongoStore code over loopback. It is NOT MongoDB: no
journaling, no TTL monitor, no transactions, mongomock's query semantics.
A pass here proves the store's logic and command shapes, not MongoDB itself.

Only what drone-discord's MongoStore sends is implemented: hello/isMaster,
ping, buildInfo, endSessions, insert, update, delete, find, findAndModify,
aggregate, createIndexes, dropDatabase; `$$NOW` and update pipelines of
`$set` stages (what the leases use). Every result fits one batch (cursor
id 0), so getMore is never needed. Listens on 127.0.0.1 only.

Usage: mongo_shim.py [PORT_FILE]   (writes the bound port to PORT_FILE)
"""
import datetime
import sys
import threading

import mockupdb
import mongomock
import pymongo
import pymongo.errors
from bson.int64 import Int64

CLIENT = mongomock.MongoClient()
LOCK = threading.Lock()
DUP = (mongomock.DuplicateKeyError, pymongo.errors.DuplicateKeyError)
CONNECTION_IDS = iter(range(1, 1 << 62))


def hello(_req, doc):
    return {
        "ismaster": True,
        "isWritablePrimary": True,
        "helloOk": True,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "localTime": datetime.datetime.now(datetime.timezone.utc),
        "connectionId": next(CONNECTION_IDS),
        "minWireVersion": 0,
        "maxWireVersion": 17,
        "readOnly": False,
    }


def coll(req, doc, name):
    return CLIENT[req.namespace][doc[name]]


def write_error(index, e):
    return {"index": index, "code": 11000, "errmsg": "E11000 duplicate key error: %s" % (e,)}


def insert(req, doc):
    c = coll(req, doc, "insert")
    n, errors = 0, []
    for i, d in enumerate(doc.get("documents", [])):
        try:
            c.insert_one(dict(d))
            n += 1
        except DUP as e:
            errors.append(write_error(i, e))
            if doc.get("ordered", True):
                break
    reply = {"n": n}
    if errors:
        reply["writeErrors"] = errors
    return reply


def is_operator_update(u):
    return isinstance(u, dict) and any(k.startswith("$") for k in u)


def update(req, doc):
    c = coll(req, doc, "update")
    n, modified, upserted, errors = 0, 0, [], []
    for i, spec in enumerate(doc.get("updates", [])):
        q, u, upsert = spec.get("q", {}), spec.get("u", {}), bool(spec.get("upsert", False))
        if isinstance(u, list):
            u = literal_pipeline(u)
        try:
            if is_operator_update(u):
                fn = c.update_many if spec.get("multi") else c.update_one
                r = fn(q, u, upsert=upsert)
            else:
                r = c.replace_one(q, dict(u), upsert=upsert)
        except DUP as e:
            errors.append(write_error(i, e))
            if doc.get("ordered", True):
                break
            continue
        n += r.matched_count
        modified += r.modified_count
        if r.upserted_id is not None:
            n += 1
            upserted.append({"index": i, "_id": r.upserted_id})
    reply = {"n": n, "nModified": modified}
    if upserted:
        reply["upserted"] = upserted
    if errors:
        reply["writeErrors"] = errors
    return reply


def delete(req, doc):
    c = coll(req, doc, "delete")
    n = 0
    for spec in doc.get("deletes", []):
        q = spec.get("q", {})
        r = c.delete_one(q) if spec.get("limit", 0) == 1 else c.delete_many(q)
        n += r.deleted_count
    return {"n": n}


def sort_spec(s):
    return list(s.items()) if s else None


def batch(req, doc, name, docs):
    return {"cursor": {"id": Int64(0), "ns": "%s.%s" % (req.namespace, doc[name]), "firstBatch": docs}}


def find(req, doc):
    c = coll(req, doc, "find")
    cur = c.find(doc.get("filter", {}), doc.get("projection"))
    if doc.get("sort"):
        cur = cur.sort(sort_spec(doc["sort"]))
    if doc.get("skip"):
        cur = cur.skip(int(doc["skip"]))
    if doc.get("limit"):
        cur = cur.limit(abs(int(doc["limit"])))
    return batch(req, doc, "find", list(cur))


def find_and_modify(req, doc):
    c = coll(req, doc, "findAndModify")
    q, s = doc.get("query", {}), sort_spec(doc.get("sort"))
    after = pymongo.ReturnDocument.AFTER if doc.get("new") else pymongo.ReturnDocument.BEFORE
    existed = c.find_one(q) is not None
    try:
        if doc.get("remove"):
            value = c.find_one_and_delete(q, sort=s, projection=doc.get("fields"))
        elif is_operator_update(doc.get("update", {})):
            value = c.find_one_and_update(q, doc["update"], sort=s, upsert=bool(doc.get("upsert")),
                                          return_document=after, projection=doc.get("fields"))
        else:
            value = c.find_one_and_replace(q, dict(doc.get("update", {})), sort=s, upsert=bool(doc.get("upsert")),
                                           return_document=after, projection=doc.get("fields"))
    except DUP as e:
        raise CommandError(11000, "E11000 duplicate key error: %s" % (e,))
    return {"lastErrorObject": {"n": 1 if (existed or doc.get("upsert")) else 0, "updatedExisting": existed},
            "value": value}


def aggregate(req, doc):
    c = coll(req, doc, "aggregate")
    return batch(req, doc, "aggregate", list(c.aggregate(list(doc.get("pipeline", [])))))


def create_indexes(req, doc):
    c = coll(req, doc, "createIndexes")
    for ix in doc.get("indexes", []):
        c.create_index(list(ix["key"].items()), name=ix.get("name"), unique=bool(ix.get("unique", False)))
    return {"createdCollectionAutomatically": False, "numIndexesBefore": 1, "numIndexesAfter": 1}


def drop_database(req, _doc):
    CLIENT.drop_database(req.namespace)
    return {"dropped": req.namespace}


def ok(_req, _doc):
    return {}


class CommandError(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code


HANDLERS = {
    "ismaster": hello,
    "hello": hello,
    "ping": ok,
    "buildinfo": lambda r, d: {"version": "6.0.0-mongomock", "versionArray": [6, 0, 0, 0]},
    "endsessions": ok,
    "insert": insert,
    "update": update,
    "delete": delete,
    "find": find,
    "findandmodify": find_and_modify,
    "aggregate": aggregate,
    "createindexes": create_indexes,
    "dropdatabase": drop_database,
}


def server_time(doc, now):
    """What the server evaluates itself: `$$NOW` becomes the shim's clock, and
    `{$add: [<date>, <ms>]}` of literals is folded (mongomock has neither)."""
    if isinstance(doc, str) and doc == "$$NOW":
        return now
    if isinstance(doc, list):
        return [server_time(v, now) for v in doc]
    if isinstance(doc, dict):
        out = {k: server_time(v, now) for k, v in doc.items()}
        add = out.get("$add")
        if len(out) == 1 and isinstance(add, list) and len(add) == 2 and isinstance(add[0], datetime.datetime) \
                and isinstance(add[1], int):
            return add[0] + datetime.timedelta(milliseconds=add[1])
        return out
    return doc


def literal_pipeline(u):
    """An update pipeline of `$set` stages whose values are literals (after
    server_time) is the same as one `$set` update; anything else is refused."""
    merged = {}
    for stage in u:
        if set(stage) != {"$set"}:
            raise CommandError(2, "mongo_shim: only $set pipeline stages are implemented")
        merged.update(stage["$set"])
    return {"$set": merged}


def handle(req):
    name = (req.command_name or "").lower()
    fn = HANDLERS.get(name)
    if fn is None:
        return req.command_err(59, "no such command: %s (mongo_shim implements only what drone-discord uses)" % name)
    try:
        with LOCK:
            now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            doc = server_time(dict(req.doc), now)
            reply = fn(req, doc)
    except CommandError as e:
        return req.command_err(e.code, str(e))
    except Exception as e:  # report, never kill the connection thread
        return req.command_err(1, "mongo_shim: %s: %s" % (type(e).__name__, e))
    return req.ok(reply)


def main():
    server = mockupdb.MockupDB(port=None, request_timeout=30)
    server.autoresponds(mockupdb.Matcher(), handle)
    port = server.run()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write("%d\n" % port)
    print("mongo_shim listening on 127.0.0.1:%d" % port, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
