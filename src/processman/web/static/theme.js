// Light and dark themes: follow the system (prefers-color-scheme) until the user picks one.

const KEY = "processman.theme";
const ORDER = ["auto", "light", "dark"];
const LABEL = { auto: "Auto", light: "Light", dark: "Dark" };
const DESCRIPTION = { auto: "follow the system", light: "light", dark: "dark" };

function apply(choice) {
  const root = document.documentElement;
  if (choice === "auto") root.removeAttribute("data-theme");
  else root.dataset.theme = choice;
}

export function initTheme(button) {
  let choice = localStorage.getItem(KEY);
  if (!ORDER.includes(choice)) choice = "auto";
  const render = () => {
    apply(choice);
    button.querySelector(".theme-label").textContent = LABEL[choice];
    button.setAttribute("aria-label", `Theme: ${DESCRIPTION[choice]} (click to change)`);
    button.title = `Theme: ${DESCRIPTION[choice]}`;
  };
  button.addEventListener("click", () => {
    choice = ORDER[(ORDER.indexOf(choice) + 1) % ORDER.length];
    if (choice === "auto") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, choice);
    render();
  });
  render();
}

/** Follow another page's theme (the PocketBase dashboard this page is framed in). */
export function followTheme(read, observed) {
  const sync = () => {
    const scheme = read();
    apply(scheme === "dark" || scheme === "light" ? scheme : "auto");
  };
  try {
    new MutationObserver(sync).observe(observed, { attributes: true });
    sync();
  } catch {
    apply("auto");
  }
}
