/** @layerfs/testkit: placeholder entry point until the package lands. */
export {};
