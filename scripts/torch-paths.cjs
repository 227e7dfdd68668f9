// Prints the include or library directory of the libtorch to build against, for
// native/binding.gyp. LIBTORCH=/path/to/libtorch (the layout of PyTorch's libtorch
// zip: include/, lib/) overrides Debian's libtorch-dev in /usr.
const path = require("node:path");
const fs = require("node:fs");

const root = process.env.LIBTORCH;
const what = process.argv[2];
if (root) {
  if (what === "include") console.log(path.join(root, "include"));
  else if (what === "lib") console.log(path.join(root, "lib"));
  else if (what === "abi") {
    // PyTorch's own zips come in pre-cxx11 and cxx11 ABI builds; follow the one given.
    const cfg = path.join(root, "share", "cmake", "Torch", "TorchConfig.cmake");
    const text = fs.existsSync(cfg) ? fs.readFileSync(cfg, "utf8") : "";
    console.log(/_GLIBCXX_USE_CXX11_ABI=0/.test(text) ? "0" : "1");
  }
} else {
  if (what === "include") console.log("/usr/include");
  else if (what === "lib") console.log("/usr/lib/x86_64-linux-gnu");
  else if (what === "abi") console.log("1");
}
