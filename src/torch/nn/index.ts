/** Layers and the Module base class, as in `torch.nn`. */
export * from "./module.js";
export * from "./layers.js";
export * as init from "./init.js";
