// A Node worker: edit this file while devMode is on and processman restarts it.
console.log(`worker ${process.pid} up, PocketBase data in ${process.env.PB_DATA_DIR || "(none)"}`);
setInterval(() => console.log(`worker ${process.pid} working`), 3000);
