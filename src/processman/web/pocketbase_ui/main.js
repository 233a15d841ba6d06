// processman's page inside PocketBase's own dashboard (an experimental PocketBase 0.40 "UI extension").
// PocketBase runs this file once, before its router starts: it adds a "Processes" link to the main
// navigation and a superuser-only route that shows processman's dashboard (served by the hooks at /pm/)
// in a frame. The frame is on the same origin, so it signs in with the dashboard's own session.
// The extension API is undocumented: if it changed, warn and leave PocketBase's dashboard as it is.
(() => {
  try {
    const href = "#/processes";
    if (!app.store.headerLinks.some((link) => link.href === href)) {
      app.store.headerLinks.push({ href, icon: "ri-pulse-line", label: "Processes" });
    }
    app.routes.superuserOnly(href, () => {
      const frame = document.createElement("iframe");
      frame.src = new URL("/pm/?embedded=1", window.location.origin).toString();
      frame.title = "Processes";
      frame.setAttribute("data-processman", "");
      frame.style.cssText = "flex: 1; width: 100%; min-height: 0; border: 0; display: block;";
      const page = document.createElement("div");
      page.className = "page-content full-height";
      page.style.cssText = "display: flex; flex-direction: column; padding: 0;";
      page.append(frame);
      return page;
    });
  } catch (error) {
    console.warn("processman: cannot add the Processes page to this PocketBase dashboard:", error);
  }
})();
