/** @layerfs/fuse: placeholder entry point until the package lands. */
export {};
