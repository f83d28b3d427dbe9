// @ts-check
// What the demo page and the chat page both need of the DOM: their
// elements, looked up once and checked, and new ones built.

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Partial<HTMLElementTagNameMap[K]>} props
 * @param {(Node | string)[]} [children]
 */
export function el(tag, props, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
export function byId(id, type) {
  return checked(document.getElementById(id), type, `#${id}`);
}

/**
 * @template {HTMLElement} T
 * @param {string} testid
 * @param {new () => T} type
 * @returns {T}
 */
export function byTestId(testid, type) {
  return checked(document.querySelector(`[data-testid="${testid}"]`), type, testid);
}

/**
 * @template {HTMLElement} T
 * @param {Element | null} node
 * @param {new () => T} type
 * @param {string} name
 * @returns {T}
 */
function checked(node, type, name) {
  if (!(node instanceof type)) {
    throw new Error(`the page has no ${type.name} ${name}`);
  }
  return node;
}
