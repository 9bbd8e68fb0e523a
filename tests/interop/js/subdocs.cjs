// One round of the subdocument model with Yjs itself, for test_subdocs_yjs.py. Reads JSON
// {parent, page} (base64 v1 updates made by pycrdt) on stdin; writes JSON on stdout: the guids
// Yjs saw, the text of the page, and the updates of a parent and a subdocument of its own.
const Y = require("yjs");

const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const decode = (text) => new Uint8Array(Buffer.from(text, "base64"));
const encode = (bytes) => Buffer.from(bytes).toString("base64");

const doc = new Y.Doc();
const added = [];
doc.on("subdocs", ({ added: docs }) => docs.forEach((sub) => added.push(sub.guid)));
Y.applyUpdate(doc, decode(input.parent));
const files = doc.getMap("files");
const page = files.get("page");
Y.applyUpdate(page, decode(input.page));
const seen = [...added]; // before our own subdocument joins the list
const own = new Y.Doc();
own.getText("text").insert(0, "from yjs");
files.set("yjs", own);
process.stdout.write(
  JSON.stringify({
    added: seen,
    pageGuid: page.guid,
    pageText: page.getText("text").toString(),
    ownGuid: own.guid,
    parent: encode(Y.encodeStateAsUpdate(doc)),
    own: encode(Y.encodeStateAsUpdate(own)),
  }),
);
